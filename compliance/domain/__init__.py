"""Pure domain rules: no database, no CLI. Everything here is data plus small evaluators."""
