"""The napari front end: the Colorize widget, its layers, its worker, samples and the reader.

Everything that imports napari or Qt lives here; the rest of the package never imports
this subpackage, so the engine, the API and the command line work without a display.
"""
