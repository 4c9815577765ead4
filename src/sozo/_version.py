"""The version of sozo (also in pyproject.toml), in a module of its own so that any module may
import it without importing the package's lazy API."""
__version__ = "0.1.0"
