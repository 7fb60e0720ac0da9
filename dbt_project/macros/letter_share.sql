{#- Share of letters, any script, among all characters of a text (NULL for a NULL text). Informational only
    (README "Letter share"): a table of numbers is content. RE2's [:alpha:] is ASCII-only, so \p{L}. -#}
{% macro letter_share(column) -%}
length(regexp_replace({{ column }}, '[^\p{L}]', '', 'g')) / greatest(length({{ column }}), 1)
{%- endmacro %}
