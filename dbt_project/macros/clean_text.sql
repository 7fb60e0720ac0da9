{#- Normalise extracted text while keeping its Markdown structure (line breaks, lists, code fences). -#}
{% macro clean_text(column) -%}
trim(
  regexp_replace(
    regexp_replace(
      regexp_replace(
        regexp_replace(
          regexp_replace(
            regexp_replace(
              replace(replace({{ column }}, chr(13) || chr(10), chr(10)), chr(13), chr(10)),
              '[\x00-\x08\x0B\x0C\x0E-\x1F\x7F\x{200B}\x{FEFF}]', '', 'g'),
            '[\x{00A0}\x{2007}\x{202F}]', ' ', 'g'),
          '(?im)^[ \t]*(copyright ©?|©|all rights reserved|skip to (main )?content|back to top)[^\n]*$', '', 'g'),
        '[ \t]+\n', chr(10), 'g'),
      '\n{3,}', chr(10) || chr(10), 'g'),
    '^\n+', '', 'g')
)
{%- endmacro %}
