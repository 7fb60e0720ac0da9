-- A live document must carry readable text after cleaning.
select uri from {{ ref('current_documents') }} where text is null or trim(text) = ''
