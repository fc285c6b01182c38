"""``python -m calc add 2 3`` prints 5."""

import sys

from calc import add, mul


def main() -> None:
    """Parse ``OP A B`` from argv and print the result (integers without a decimal point)."""
    op, a, b = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    result = {"add": add, "mul": mul}[op](a, b)
    print(int(result) if result == int(result) else result)


if __name__ == "__main__":
    main()
