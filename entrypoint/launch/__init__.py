"""The side effects after the plan: download, guard, record, exec."""
