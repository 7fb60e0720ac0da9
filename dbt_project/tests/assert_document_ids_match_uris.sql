-- document_id is derived from the URI; a mismatch means the ingest step wrote a corrupt row.
select uri from {{ ref('current_documents') }} where document_id != left(sha256(uri), 32)
