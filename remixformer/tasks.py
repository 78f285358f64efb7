"""Prediction tasks: the diagnosis and optional extra heads (Derm7pt criteria, ISIC attributes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DIAG = "diag"
SINGLE = "single"  # one class per case, softmax + cross-entropy
MULTI = "multi"  # several binary attributes per case, sigmoid + binary cross-entropy


@dataclass(frozen=True)
class TaskSpec:
    """One output head: its name, class (or attribute) names and kind."""

    name: str
    classes: tuple[str, ...]
    kind: str = SINGLE
    weight: float = 1.0  # weight of this task's loss in the summed loss

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"task name must be a non-empty identifier, got {self.name!r}")
        if self.kind not in (SINGLE, MULTI):
            raise ValueError(f"task {self.name!r}: kind must be {SINGLE!r} or {MULTI!r}, got {self.kind!r}")
        min_classes = 2 if self.kind == SINGLE else 1
        if len(self.classes) < min_classes:
            raise ValueError(
                f"task {self.name!r} needs at least {min_classes} classes, got {list(self.classes)}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"task {self.name!r} has repeated class names: {list(self.classes)}")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": list(self.classes), "kind": self.kind, "weight": self.weight}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSpec:
        return cls(
            name=d["name"],
            classes=tuple(d["classes"]),
            kind=d.get("kind", SINGLE),
            weight=float(d.get("weight", 1.0)),
        )


@dataclass(frozen=True)
class TaskSet:
    """An ordered set of tasks; the first one is the diagnosis."""

    tasks: tuple[TaskSpec, ...] = field(default_factory=tuple)

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"no task named {name!r}; tasks are {self.names}")

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]


def normalize_tasks(tasks: Any) -> tuple[TaskSpec, ...]:
    """Accept the forms users write and return TaskSpecs, diagnosis first.

    Accepted: an int (number of diagnosis classes), a mapping ``name -> n_classes | class list``, a
    sequence of :class:`TaskSpec` or of dicts as written by :meth:`TaskSpec.to_dict`.
    """
    if isinstance(tasks, int):
        specs = [TaskSpec(DIAG, tuple(f"class_{i}" for i in range(tasks)))]
    elif isinstance(tasks, Mapping):
        specs = []
        for name, v in tasks.items():
            if isinstance(v, int):
                specs.append(TaskSpec(name, tuple(f"class_{i}" for i in range(v))))
            elif isinstance(v, Mapping):
                specs.append(TaskSpec.from_dict({"name": name, **v}))
            elif isinstance(v, Iterable) and not isinstance(v, str):
                specs.append(TaskSpec(name, tuple(v)))
            else:
                raise ValueError(f"task {name!r}: expected a class count or a list of class names, got {v!r}")
    elif isinstance(tasks, Sequence) and not isinstance(tasks, str):
        specs = [t if isinstance(t, TaskSpec) else TaskSpec.from_dict(t) for t in tasks]
    else:
        raise ValueError(f"tasks: expected an int, a mapping or a list of task specs, got {tasks!r}")
    if not specs:
        raise ValueError("tasks: at least one task (the diagnosis) is required")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"tasks: repeated task names {names}")
    if specs[0].kind != SINGLE:
        raise ValueError(f"tasks: the first task is the diagnosis and must be single-label, got {specs[0]}")
    return tuple(specs)
