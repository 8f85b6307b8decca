"""The bounds every expression lives within: its size, its depth, the work it may do, what it may build."""

MAX_SOURCE = 2_000  # characters in one expression
MAX_NESTING = 100  # levels of an expression's syntax tree: deeper ones would exhaust Python's stack
MAX_STEPS = 200_000  # steps of work per evaluation (see evaluate._Evaluator.cost for what a step buys)
MAX_TEXT = 1_000_000  # characters in a text an expression builds
MAX_ITEMS = 100_000  # items in a list an expression builds
ITEMS_PER_STEP = 4  # going through data costs a step per 4 values ...
CHARS_PER_STEP = 64  # ... and per 64 characters of text
