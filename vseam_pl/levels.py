"""V-SEAM's semantic levels and the question categories that belong to each."""

from __future__ import annotations

LEVELS: tuple[str, ...] = ("object", "attribute", "relation")

#: V-SEAM release categories (GQA subsets) and the synthetic world's categories, by level.
CATEGORY_LEVEL: dict[str, str] = {
    # V-SEAM release
    "Animal": "object",
    "Indoor": "object",
    "Vehicle": "object",
    "Color": "attribute",
    "Material": "attribute",
    "Action": "relation",
    "Spatial": "relation",
    # synthetic world extras
    "Shape": "object",
    "Size": "attribute",
    "Vertical": "relation",
}

#: GQA's `types.semantic` codes.
GQA_SEMANTIC_LEVEL: dict[str, str] = {"obj": "object", "attr": "attribute", "rel": "relation"}


def level_of(category: str | None, semantic: str | None = None) -> str | None:
    """Level of a category (case-insensitive), falling back to GQA's `types.semantic` code."""
    if category:
        for name, level in CATEGORY_LEVEL.items():
            if name.lower() == category.lower():
                return level
    if semantic:
        return GQA_SEMANTIC_LEVEL.get(semantic)
    return None
