"""What the commands print: the plan, Helm values, derived profiles."""
