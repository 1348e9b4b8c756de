"""Programme rulesets as data files, and the loader that validates them.

Each ruleset is one effective-dated version of one programme (``ipledge/2026-mod``). Its file
says what the programme requires; the engine's evaluators are general and read only this data.
"""
