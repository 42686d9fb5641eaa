"""DuckDB warehouse: schema DDL, read/write helpers, analyst snapshot, data-quality suites.

The only package that writes SQL.
"""
from warehouse.db import Warehouse, WarehouseLockTimeout, default_warehouse_path

__all__ = ["Warehouse", "WarehouseLockTimeout", "default_warehouse_path"]
