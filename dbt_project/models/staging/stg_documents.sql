{{ config(materialized='incremental', unique_key='seq', on_schema_change='append_new_columns') }}

-- One row per raw document version, text cleaned; only versions newer than the last build are processed.
with raw as (
    select *
    from {{ source('warehouse', 'raw_documents') }}
    {% if is_incremental() %}
    where seq > (select coalesce(max(seq), 0) from {{ this }})
    {% endif %}
),

cleaned as (
    select
        seq,
        uri,
        document_id,
        source,
        document_version,
        is_deleted,
        coalesce(nullif(trim(title), ''), uri) as title,
        case when is_deleted then null else {{ clean_text('raw_text') }} end as text,
        mime,
        path,
        size_bytes,
        modified_at,
        run_id,
        ingested_at
    from raw
)

select
    *,
    case when text is null then null else sha256(text) end as content_hash,
    coalesce(length(text), 0) as char_length,
    -- Computed once per version here, so the quality suite need not scan every text.
    {{ letter_share('text') }} as letter_share,
    case when text is null or trim(text) = '' then 0 else len(string_split_regex(trim(text), '\s+')) end as word_count,
    case
        when text is null then null
        when regexp_matches(lower(text), '\b(the|and|of|to|is|in|with|for)\b') then 'en'
        else 'und'
    end as language
from cleaned
