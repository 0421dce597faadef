"""Sequential, as torch.nn.Sequential."""

from __future__ import annotations

from collections import OrderedDict

from .module import Module

__all__ = ["Sequential"]


class Sequential(Module):
    """Runs its children in order. ``Sequential(a, b)`` or ``Sequential(OrderedDict(...))``;
    children are named "0", "1", ... (or by the dict's keys), as in PyTorch."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        if not -len(items) <= idx < len(items):
            raise IndexError(f"index {idx} out of range for a Sequential of length {len(items)}")
        return items[idx][1]

    def __setitem__(self, idx: int, module) -> None:
        name = list(self._modules)[idx]
        setattr(self, name, module)

    def append(self, module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x
