-- The live corpus: the latest version of each URI unless its latest row is a deletion,
-- with exact-duplicate contents collapsed onto the smallest URI.
with latest as (
    select *
    from {{ ref('stg_documents') }}
    qualify row_number() over (partition by uri order by seq desc) = 1
),

live as (
    select * from latest where not is_deleted and char_length > 0
)

select
    uri,
    document_id,
    source,
    document_version,
    title,
    text,
    content_hash,
    mime,
    path,
    size_bytes,
    modified_at,
    language,
    char_length,
    -- Versions staged before stg_documents had this column hold NULL there: computed here for those only.
    coalesce(letter_share, {{ letter_share('text') }}) as letter_share,
    word_count,
    run_id,
    ingested_at
from live
qualify row_number() over (partition by content_hash order by uri) = 1
