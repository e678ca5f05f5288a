"""The case registry: @case("group.name") registers a function that takes one trial.Trial."""

CASES = {}


class Case:
    def __init__(self, name, fn, slow, exclusive, doc):
        self.name, self.fn, self.slow, self.exclusive, self.doc = name, fn, slow, exclusive, doc


def case(name, slow=False, exclusive=False):
    """slow: waits for a hold or timeout (run first, in parallel); exclusive: may crash the
    reference, so it runs alone, with the server's pid checked before and after."""
    def register(fn):
        if name in CASES:
            raise ValueError(f"duplicate case {name}")
        CASES[name] = Case(name, fn, slow, exclusive, (fn.__doc__ or "").strip())
        return fn
    return register
