"""Recipe catalog: one Markdown file per problem. Shipped as `cvdoctor.recipes` (package data)."""
