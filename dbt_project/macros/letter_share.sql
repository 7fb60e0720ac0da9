{#- Share of letters among all characters of a text (NULL for a NULL text): prose is mostly letters. -#}
{% macro letter_share(column) -%}
length(regexp_replace({{ column }}, '[^[:alpha:]]', '', 'g')) / greatest(length({{ column }}), 1)
{%- endmacro %}
