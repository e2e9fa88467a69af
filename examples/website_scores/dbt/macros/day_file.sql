{# Where a model's data for the run's day lives: <lake>/reporting/<model>/date=<day>/<model>.parquet.
   A model's `location` is read from the manifest by the coordinator and becomes its event's
   location, so it is set in the model's config (dbt-duckdb's default is not in the manifest). #}
{% macro day_file(model_name) -%}
  {{ return(var('lake') ~ '/reporting/' ~ model_name ~ '/date=' ~ var('partition') ~ '/' ~ model_name ~ '.parquet') }}
{%- endmacro %}
