"""Input: lazy lines and rows from files or stdin, turned into items by the templates."""
