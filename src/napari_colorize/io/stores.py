"""Reading zarr arrays and OME-Zarr stores (lazily, as dask arrays)."""

from __future__ import annotations

from pathlib import Path

from .image import Image, ImageReadError, lead_axis_names
from .tiff import _UNITS_UM

__all__ = ["read_zarr"]


def read_zarr(path: Path) -> Image:
    """A zarr array, the first array of a group, or level 0 of an OME-Zarr multiscale image."""
    import dask.array as da
    import zarr

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return Image(da.from_zarr(node))
    attrs = dict(node.attrs)
    ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if not ms:
        arrays = sorted(name for name, _ in node.arrays())
        if not arrays:
            raise ImageReadError(f"{path.name} is a zarr group without arrays or OME multiscales metadata")
        return Image(da.from_zarr(node[arrays[0]]))
    dataset = ms[0]["datasets"][0]
    data = da.from_zarr(node[dataset["path"]])
    axes = [a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", [])]
    pixel_size = unit = z_step = None
    for tr in dataset.get("coordinateTransformations", []):
        if tr.get("type") == "scale" and len(tr["scale"]) >= 2:
            pixel_size = (float(tr["scale"][-2]), float(tr["scale"][-1]))
            if "z" in axes and len(tr["scale"]) == len(axes):
                z_step = float(tr["scale"][axes.index("z")])
    space = [a for a in ms[0].get("axes", []) if isinstance(a, dict) and a.get("name") == "x"]
    if space and space[0].get("unit"):
        factor = _UNITS_UM.get(space[0]["unit"])
        unit = "micrometer" if factor else space[0]["unit"]
        if factor and pixel_size:
            pixel_size = (pixel_size[0] * factor, pixel_size[1] * factor)
            z_step = z_step * factor if z_step else None
    if "c" in axes and data.shape[axes.index("c")] in (3, 4):
        data = da.moveaxis(data, axes.index("c"), -1)
        axes.remove("c")
    lead = axes[:-2] if len(axes) >= 2 else None
    return Image(data, pixel_size, unit, lead_axis_names(lead), z_step=z_step if pixel_size else None)
