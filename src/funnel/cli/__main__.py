"""python -m funnel.cli"""

from funnel.cli import app

if __name__ == "__main__":
    app()
