"""``steer export --push-to-hub``: upload an exported model folder to the Hugging Face hub.

Through ``huggingface_hub``'s documented API (``HfApi.create_repo(exist_ok=True)``, ``create_branch`` for a
``revision`` other than main, ``upload_folder``). The token is the one given, else ``HF_TOKEN``, else the
one ``hf auth login`` saved; the endpoint is ``HF_ENDPOINT`` (read when pushing), else the public hub.
:func:`target` checks a push without the network and :func:`check` asks the hub about the token, both
before the (long) export; :func:`push` uploads.
Every failure (no token, a refused token, no write access, an invalid repo id, no network) is one
:class:`~steer.errors.SteerError` line naming the repo and the token's origin, never the token itself.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from steer.errors import SteerError, UsageError

PUBLIC_HUB = "https://huggingface.co"


@dataclass(frozen=True)
class Target:
    """A checked place to push to: the repo id, the token and where it came from, the endpoint."""

    repo_id: str
    token: str = field(repr=False)  # never shown
    token_from: str  # "--token", "HF_TOKEN" or "the token `hf auth login` saved" (never the token)
    endpoint: str


@dataclass(frozen=True)
class Pushed:
    """What one push did: the repo's URL, the commit's, the files uploaded, and whether the repo is
    private (as the hub says, not as asked)."""

    repo_id: str
    url: str
    commit_url: str
    files: int
    private: bool
    revision: str

    def to_json(self) -> dict:
        return {"repo_id": self.repo_id, "url": self.url, "commit_url": self.commit_url, "files": self.files,
                "private": self.private, "revision": self.revision}


def target(repo_id: str, token: str | None = None, endpoint: str | None = None) -> Target:
    """Check a push before anything is exported or sent: the repo id's form, a token to send, the hub not
    switched off (``HF_HUB_OFFLINE``). No network."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UsageError(f"--push-to-hub {repo_id!r} is not a hub repo id ({_first_line(err)}); give "
                         "NAME or NAMESPACE/NAME", field="push_to_hub") from None
    if constants.HF_HUB_OFFLINE:
        raise UsageError("HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: unset it to push to the hub")
    if token:
        given, origin = token, "--token"
    elif os.environ.get("HF_TOKEN"):
        given, origin = os.environ["HF_TOKEN"].strip(), "HF_TOKEN"
    else:
        given, origin = get_token(), "the token `hf auth login` saved"
    if not given:
        raise UsageError(f"no Hugging Face token to push {repo_id} with: pass --token, set HF_TOKEN, or run "
                         "`hf auth login` (a token with write access)", field="token")
    url = (endpoint or os.environ.get("HF_ENDPOINT") or PUBLIC_HUB).rstrip("/")
    return Target(repo_id, given, origin, url)


def check(where: Target) -> str:
    """Ask the hub whose token ``where`` holds (``whoami``), so that a refused or read-only token fails before
    a long export rather than after it; the user's name ("" when the hub rate-limits the question or fails
    on its side: the push then finds out)."""
    from huggingface_hub import HfApi

    try:
        with _quiet():
            info = HfApi(endpoint=where.endpoint, token=where.token).whoami()
    except Exception as err:  # noqa: BLE001 - huggingface_hub's HTTP and transport errors, explained below
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 429 or (status is not None and status >= 500):
            return ""
        raise _explained(err, where) from None
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise UsageError(f"the token from {where.token_from} is read-only: pushing {where.repo_id} needs a token with "
                         "write access", field="token")
    return str(info.get("name") or "")


def push(folder: str | Path, repo_id: str | Target, *, token: str | None = None, private: bool = False,
         revision: str | None = None, commit_message: str | None = None) -> Pushed:
    """Upload every file of ``folder`` (an exported model) to the hub model repo ``repo_id``, creating the
    repo (``private`` when new; an existing repo keeps its visibility, and an existing public one refuses
    ``private``) and the branch ``revision`` when missing. Returns where it went (``private``: the repo's
    real visibility); failures are one :class:`SteerError` line."""
    folder = Path(folder)
    if not folder.is_dir() or not any(p.is_file() for p in folder.rglob("*")):
        raise UsageError(f"{folder}: nothing to push (not a folder, or an empty one)")
    where = repo_id if isinstance(repo_id, Target) else target(repo_id, token)
    files = sum(1 for p in folder.rglob("*") if p.is_file() and ".git" not in p.relative_to(folder).parts)
    message = commit_message or f"Upload {folder.name} with steer"
    try:
        with _quiet():
            return _upload(folder, where, private, revision, message, files)
    except SteerError:
        raise
    except Exception as err:  # noqa: BLE001 - huggingface_hub's HTTP, transport and validation errors: one line
        raise _explained(err, where) from None


def _upload(folder: Path, where: Target, private: bool, revision: str | None, message: str, files: int) -> Pushed:
    """create_repo (exist_ok) -> repo_info (the repo's real visibility: a public one refuses --private) ->
    create_branch (a revision other than main) -> upload_folder."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=where.endpoint, token=where.token)
    repo = api.create_repo(where.repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = getattr(repo, "repo_id", None) or where.repo_id  # "name" alone lands in the token's namespace
    said = getattr(api.repo_info(repo_id, repo_type="model"), "private", None)  # an existing repo kept its own
    is_private = private if said is None else bool(said)
    if private and not is_private:
        raise UsageError(f"{repo_id} already exists on {where.endpoint} and is public: --private does not change "
                         "an existing repo's visibility (make it private in its settings on the hub, or push "
                         "without --private)", field="private")
    branch = revision or "main"
    if branch != "main":
        api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type="model")
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=branch,
                               commit_message=message)
    return Pushed(repo_id, str(repo), str(commit.commit_url), files, is_private, branch)


class _quiet:
    """huggingface_hub's progress display off while pushing (library code never prints), then as it was."""

    def __enter__(self) -> None:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

        self._was_on = not are_progress_bars_disabled()
        if self._was_on:
            disable_progress_bars()

    def __exit__(self, *exc: object) -> None:
        from huggingface_hub.utils import enable_progress_bars

        if self._was_on:
            enable_progress_bars()


def _explained(err: BaseException, where: Target) -> SteerError:
    """One line for a failed push: what the hub said (401, 403, 404, 400), or why it was not reached."""
    status = getattr(getattr(err, "response", None), "status_code", None)
    said = _server_message(err)
    repo, tok = where.repo_id, where.token_from
    if status == 401:
        return UsageError(f"the hub at {where.endpoint} refused the token from {tok} (401 Unauthorized) while "
                          f"pushing {repo}: check the token, or log in again with `hf auth login`", field="token")
    if status == 403:
        return UsageError(f"the token from {tok} may not write to {repo} (403 Forbidden{': ' + said if said else ''}): "
                          "use a token with write access to that namespace", field="token")
    if status == 404:
        return UsageError(f"{repo}: not found on {where.endpoint} (404{': ' + said if said else ''}): check the "
                          f"repo id and that the token from {tok} can see it")
    if status is not None and 400 <= status < 500:
        return UsageError(f"the hub refused the push to {repo} ({status}: {said or _first_line(err)})")
    if status is not None:
        return SteerError(f"the hub failed while pushing {repo} ({status}: {said or _first_line(err)}); "
                          "try again later")
    if isinstance(err, _network_errors()):
        return SteerError(f"cannot reach the hub at {where.endpoint} to push {repo} ({_first_line(err)}): check the "
                          "network, or HF_ENDPOINT")
    if isinstance(err, ValueError):  # an invalid README.md front matter, a malformed answer
        return UsageError(f"cannot push {repo}: {_first_line(err)}")
    return SteerError(f"cannot push {repo}: {type(err).__name__}: {_first_line(err)}")


def _server_message(err: BaseException) -> str:
    """The hub's own reason for an HTTP error, on one line (empty when it gave none)."""
    said = getattr(err, "server_message", None) or ""
    return " ".join(str(said).split())


def _network_errors() -> tuple[type[BaseException], ...]:
    """The transport errors (no connection, a timeout) of the HTTP client huggingface_hub uses."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__
