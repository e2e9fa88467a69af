"""dlt's column types as the project names them (pure), variants included."""

from __future__ import annotations

from coordinator.eljob import column_type, table_columns


def test_types_are_named_as_the_projects_spark_jobs_name_theirs() -> None:
    assert [
        column_type(c)
        for c in (
            {"data_type": "text"},
            {"data_type": "bigint"},
            {"data_type": "bigint", "precision": 32},
            {"data_type": "bigint", "precision": 16},
            {"data_type": "bool"},
            {"data_type": "double"},
            {"data_type": "decimal", "precision": 10, "scale": 2},
            {"data_type": "decimal"},
            {"data_type": "timestamp"},
            {"data_type": "date"},
            {"data_type": "json"},
            {"data_type": "wei"},
        )
    ] == [
        "string",
        "bigint",
        "int",
        "smallint",
        "boolean",
        "double",
        "decimal(10,2)",
        "decimal",
        "timestamp",
        "date",
        "json",
        "decimal(38,0)",
    ]


def test_a_column_with_variants_is_typed_variant_and_columns_without_a_type_are_left_out() -> None:
    table = {
        "columns": {
            "amount": {"name": "amount", "data_type": "bigint", "nullable": True},
            "amount__v_text": {"name": "amount__v_text", "data_type": "text", "variant": True},
            "amount__v_double": {"name": "amount__v_double", "data_type": "double", "variant": True},
            "id": {"name": "id", "data_type": "bigint", "nullable": False},
            "pending": {"name": "pending"},  # seen without data: no type yet
        }
    }
    assert [(c.name, c.type, c.nullable) for c in table_columns(table)] == [
        ("amount", "variant(bigint,string,double)", True),
        ("amount__v_text", "string", True),
        ("amount__v_double", "double", True),
        ("id", "bigint", False),
    ]
