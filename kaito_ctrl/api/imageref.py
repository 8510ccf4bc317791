"""Why an image reference will not pull as written, the way a container runtime parses it.

Kubernetes admits a Pod whose image is not a valid reference; the kubelet reports ``InvalidImageName`` later.
kaito-ctrl does the same for the images a Workspace names (placeholders such as
``ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1`` are admitted with a warning) and refuses only what a Pod would
refuse too: an empty reference or one with whitespace.
"""

from __future__ import annotations

import re

# The grammar of distribution/reference: a host is dot-separated labels of letters, digits and '-' (optionally
# a port); path components are lower case, separated by '.', '_', '__' or '-'; then a tag and/or a digest.
# The same grammar as one pattern (RE2 and Python compatible), for kwok's jq selector in the sandbox.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PULLABLE_PATTERN = (
    rf"^(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_HOST_LABEL = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def refusal(ref: str) -> str | None:
    """What makes ``ref`` unacceptable even to a Pod (empty, whitespace), else None."""
    if not ref:
        return "the image reference is empty"
    if any(c.isspace() for c in ref):
        return "an image reference cannot contain whitespace"
    return None


def pull_problem(ref: str) -> str | None:
    """Why a container runtime would refuse ``ref`` (the kubelet's InvalidImageName), else None."""
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST.match(digest):
        return f"digest {digest!r} is not sha256:<64 hex>"
    head, sep, last = rest.rpartition("/")
    name_tail, colon, tag = last.partition(":")
    if colon and not _TAG.match(tag):
        return f"tag {tag!r} has characters a tag cannot have"
    parts = [*head.split("/"), name_tail] if sep else [name_tail]
    first = parts[0]
    # Like docker: the first component is a registry host when it has a '.' or ':' or is localhost.
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        host, _, port = first.partition(":")
        if port and not port.isdigit():
            return f"registry port {port!r} is not a number"
        bad = [label for label in host.split(".") if not _HOST_LABEL.match(label)]
        if bad:
            why = "'_'" if any("_" in b for b in bad) else "characters"
            return f"registry host {host!r} has {why} a host name cannot have"
        parts = parts[1:]
    for part in parts:
        if not _PATH_COMPONENT.match(part):
            if part.lower() != part and _PATH_COMPONENT.match(part.lower()):
                return f"repository {part!r} has upper-case letters; repository names are lower case"
            return f"repository {part!r} has characters a repository name cannot have"
    return None


def pull_warning(path: str, ref: str, *, pushed: bool = False, by_puller: bool = False) -> str | None:
    """The admission warning for an image that will not pull (or, for a tuning output, push), naming the
    field; None when it looks valid. ``by_puller``: the image is an argument of a puller init container, not a
    container image, so the puller fails (and restarts) rather than the kubelet refusing it."""
    problem = pull_problem(ref)
    if problem is None:
        return None
    if pushed:
        verb, later = "push", "the tuning Job cannot push its result"
    elif by_puller:
        verb, later = (
            "pull",
            "its puller init container will fail and the Workspace will report InvalidImageName",
        )
    else:
        verb, later = "pull", "the pod will report InvalidImageName"
    return (
        f"{path}: {ref!r} will not {verb} as written ({problem}); {later} until it is replaced "
        "(a placeholder? put your registry and image there)"
    )
