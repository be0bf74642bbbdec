"""Installed as `mlrobust.grammar`: it carries mlr.lark inside the wheel."""
