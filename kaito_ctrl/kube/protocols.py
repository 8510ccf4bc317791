"""What code needs from a Kubernetes client, as small protocols that ``KubeClient`` satisfies and test
doubles can implement in part (the transport seam between logic and the apiserver)."""

from __future__ import annotations

from typing import Any, Protocol

from kaito_ctrl.kube.resources import Resource

Obj = dict[str, Any]


class Getter(Protocol):
    async def get(self, res: Resource, name: str, namespace: str | None = None) -> Obj: ...


class CreateReplace(Getter, Protocol):
    """Read-modify-write with optimistic concurrency (leases, Secrets)."""

    async def create(self, res: Resource, obj: Obj, namespace: str | None = None) -> Obj: ...

    async def replace(self, res: Resource, obj: Obj) -> Obj: ...


class Applier(Protocol):
    async def apply(
        self,
        res: Resource,
        obj: Obj,
        *,
        field_manager: str = "kaito-ctrl",
        force: bool = True,
        subresource: str | None = None,
    ) -> Obj: ...


class ObjectClient(CreateReplace, Applier, Protocol):
    """Everything a controller writes with."""

    async def list_all(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]: ...

    async def merge_patch(
        self,
        res: Resource,
        name: str,
        patch: Obj,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        resource_version: str | None = None,
    ) -> Obj: ...

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = "Background",
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> Obj | None: ...


class ListWatcher(Protocol):
    """What an informer needs."""

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        timeout: float | None = None,
    ) -> Obj: ...

    def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int,
        allow_bookmarks: bool = True,
        label_selector: str | None = None,
        field_selector: str | None = None,
        read_timeout: float | None = None,
    ) -> Any: ...
