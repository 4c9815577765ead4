"""Models on the Hugging Face Hub, by reference: ``hf://user/name[@revision]`` parsed, checked and
downloaded through ``huggingface_hub.snapshot_download`` into its cache (``HF_HUB_OFFLINE=1``: the
cache only). Below the run folder (``sozo.runs.Run`` resolves such a reference to its local copy);
pushing and the model card are in :mod:`sozo.hub`. ``huggingface_hub`` is an optional extra
(``pip install 'sozo[hub]'``), imported only when used.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import SozoError

PREFIX = "hf://"
INSTALL = "pip install 'sozo[hub]'"
# a Hub repository id: one namespace and one name of letters, digits, '-', '_', '.' (the Hub's own rule,
# checked before the package is imported, so that a typo is told without it)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def is_hub(ref: object) -> bool:
    """True for a string naming a Hub model: ``hf://user/name`` (optionally ``@revision``)."""
    return isinstance(ref, str) and ref.startswith(PREFIX)


def parse(ref: str) -> tuple[str, str | None]:
    """``hf://user/name@revision`` -> (``user/name``, ``revision`` or None); a SozoError if malformed."""
    body = ref[len(PREFIX):] if ref.startswith(PREFIX) else ref
    repo, _, revision = body.partition("@")
    check_repo_id(repo, ref)
    if "@" in body and not revision:
        raise SozoError(f"'{ref}' names no revision after '@'", hint=f"for example {PREFIX}{repo}@main")
    return repo, revision or None


def check_repo_id(repo: str, shown: str | None = None) -> str:
    """``repo`` when it is a valid ``user/name`` Hub repository id, else a SozoError."""
    if not _REPO_ID.match(repo) or "--" in repo or ".." in repo or repo.endswith((".", "-")):
        raise SozoError(f"'{shown or repo}' is not a Hub model name",
                        hint="give it as user/name (letters, digits, '-', '_' and '.'), e.g. "
                             f"{PREFIX}alice/dcgan-mnist for loading, alice/dcgan-mnist for sozo push")
    return repo


def hub_package() -> Any:
    """The huggingface_hub package, or a SozoError saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise SozoError("the Hugging Face Hub needs the huggingface_hub package, which is not installed",
                        hint=f"{INSTALL} (or pip install huggingface_hub)") from None
    return huggingface_hub


def hf_errors() -> Any:
    """The module holding huggingface_hub's exceptions (``huggingface_hub.utils`` in every version)."""
    from huggingface_hub import utils
    return utils


def download(ref: str) -> Path:
    """The local folder of the Hub model ``ref`` (``hf://user/name[@revision]``), downloaded into
    huggingface_hub's cache or found there (``HF_HUB_OFFLINE=1``: the cache only)."""
    repo, revision = parse(ref)
    hf = hub_package()
    err = hf_errors()
    from ._version import __version__
    try:
        folder = hf.snapshot_download(repo, revision=revision, library_name="sozo", library_version=__version__)
    except err.RevisionNotFoundError:
        raise SozoError(f"{PREFIX}{repo} has no revision '{revision}'",
                        hint="give a branch, a tag or a commit hash the repository has (its 'Files' page lists "
                             "them)") from None
    except err.RepositoryNotFoundError:
        raise SozoError(f"no such model on the Hub: {repo}",
                        hint="check the name (user/name); a private repository needs `hf auth login` or "
                             "HF_TOKEN") from None
    except err.LocalEntryNotFoundError:
        raise SozoError(f"{ref} is not in the local cache, and the Hub cannot be reached (offline)",
                        hint="connect once to download it; afterwards HF_HUB_OFFLINE=1 loads it from the "
                             "cache") from None
    except err.HFValidationError as e:
        raise SozoError(f"'{ref}' is not a Hub model name: {e}", hint="give it as hf://user/name") from None
    except (err.HfHubHTTPError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SozoError(f"could not download {ref}: {first}",
                        hint="check the connection (HF_HUB_OFFLINE=1 uses only the cache)") from None
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise SozoError(f"{ref} is not a sozo model: it has no config.json",
                        hint="sozo loads repositories that `sozo push` wrote")
    return path


__all__ = ["download", "parse", "is_hub", "check_repo_id", "hub_package", "hf_errors", "PREFIX", "INSTALL"]
