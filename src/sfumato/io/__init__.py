"""Stage 1 — image I/O that respects artists' files.

Modules: :mod:`~sfumato.io.read` (finding and decoding files), :mod:`~sfumato.io.decode` (Pillow modes and
16-bit decoding), :mod:`~sfumato.io.metadata` (EXIF/XMP/ICC/dpi, orientation reset),
:mod:`~sfumato.io.write` (:func:`save_image`, :func:`stored_rgb`), :mod:`~sfumato.io.codecs` (the encoders,
16-bit PNG and TIFF written by hand), :mod:`~sfumato.io.formats` (formats and suffixes),
:mod:`~sfumato.io.artimage` (:class:`ArtImage`, :class:`ImageError`), :mod:`~sfumato.io.tensors` (pixel and
tensor conventions, rounding to a bit depth), :mod:`~sfumato.io.outputs` (output planning and the codec
quantiser) and :mod:`~sfumato.io.atomic` (the one atomic writer).

What this package promises:

* **Formats.** PNG, JPEG, WebP and TIFF are read and written; AVIF too when the installed Pillow has
  AVIF support (``PIL.features.check("avif")``). The format is decided from the file's bytes (Pillow's
  detection), never from its name. Camera "MPO" JPEGs are read as JPEG (their primary picture).
  Animated or multi-page files, non-images, truncated files and images larger than ``max_pixels``
  are rejected with an :class:`ImageError`, a one-line message naming the file and what to do.
  Files are fully decoded on load (Pillow's ``LOAD_TRUNCATED_IMAGES`` is never set).
  :func:`probe_image` vets a file from its header alone, with the same messages, and also refuses
  images under :data:`MIN_SIDE` (32 px a side, the smallest LPIPS can measure) when asked to.
* **Orientation.** The EXIF orientation is applied on load (pixels come out upright), and every EXIF
  or XMP packet this package hands out or writes says ``Orientation = 1`` so viewers do not rotate twice.
  The EXIF bytes are patched in place, so maker notes and their offsets stay valid.
* **Metadata.** The ICC profile, EXIF and XMP are kept in every output format (PNG: ``iCCP``, ``eXIf``
  and an ``iTXt XML:com.adobe.xmp`` chunk; JPEG: APP2/APP1; WebP: ICCP/EXIF/XMP chunks; TIFF: tags
  34675, 34665 (EXIF IFD) and 700; AVIF: colr/Exif/XMP boxes). The print resolution (dpi) is kept
  where the format has one, and a PNG's text chunks (Author, Copyright...) in PNG outputs. Not carried:
  IPTC/Photoshop resource blocks (modern editors mirror IPTC fields into XMP) and other private data.
  Pixels of RGB files with an ICC profile are **not** converted: the perturbation is computed in the
  file's own RGB space and the profile is written back unchanged.
* **Colour modes.** CMYK is converted to sRGB through its embedded ICC profile (perceptual intent), or
  with Pillow's naive conversion when it has none; the output is RGB with an sRGB profile (or none).
  Palette images become RGB, or RGBA when they carry transparency (``tRNS`` colour keys of RGB/grey
  PNGs become an alpha channel too). Greyscale sources (``1``, ``L``, ``LA``, ``I;16``, 16-bit
  grey+alpha PNG) are replicated to RGB for processing and **saved back as greyscale**: the RGB given
  to :func:`save_image` is projected onto the grey axis (mean of the three channels, the least-squares
  inverse of the replication), so the chroma part of a perturbation is dropped. Formats without a grey
  mode (WebP, AVIF) store that grey as R = G = B. ``1`` (bilevel) sources are saved as 8-bit ``L``.
* **Alpha** is never modified: it is stored bit-exactly when the output has the source's bit depth,
  and rounded to 8 bits only when a 16-bit source is written to an 8-bit format, lossy formats
  included (lossy WebP with ``alpha_quality=100``; AVIF with a lossless alpha plane from the AOM
  encoder, checked after encoding). JPEG cannot store transparency: saving an image whose alpha is
  not fully opaque as JPEG raises ``ValueError``.
* **16 bits.** 16-bit PNG (grey, grey+alpha, RGB, RGBA) and 16-bit TIFF (grey, RGB, RGBA) keep 16 bits
  per channel when written as PNG or TIFF. Pillow reads 16-bit colour PNG/TIFF as 8-bit and cannot
  write them, so this package (a) decodes such files twice with Pillow's own decoders, once taking the
  high byte of every sample (Pillow's default unpacker) and once the low byte (the unpacker of the
  opposite byte order), and joins the two, and (b) writes 16-bit PNG itself (zlib, standard PNG row
  filters chosen per row, ``IHDR`` bit depth 16, ``iCCP``/``eXIf``/``iTXt``/``pHYs`` chunks; PNG 1.2
  spec) and all TIFF output itself (baseline TIFF 6.0, Adobe Deflate compression with horizontal
  predictor, the IFD serialised by Pillow's ``ImageFileDirectory_v2``). 16-bit TIFFs with separate
  colour planes (PlanarConfiguration 2) are rejected: Pillow cannot decode them correctly.
  JPEG, WebP and AVIF outputs are 8-bit (AVIF input is decoded to 8 bits by Pillow).
* **Lossy outputs** (JPEG, lossy WebP, AVIF) are written at quality >= 95; JPEG and AVIF with 4:4:4
  chroma (no subsampling). Lossy WebP is always 4:2:0 (a limit of the VP8 codec): WebP defaults to
  lossless. PNG and TIFF are always lossless.
* **Safety.** Originals are only ever read. Outputs are written to a temporary file in the destination
  folder and moved into place atomically; an existing file is never replaced unless ``overwrite=True``,
  and the source file itself is never replaced at all.

Pixel convention: :attr:`ArtImage.rgb` is float32 ``HxWx3`` in ``[0, 1]`` (``value / (2**bits - 1)``);
:func:`to_tensor`/:func:`from_tensor` convert to and from the project's ``1x3xHxW`` torch convention.
For lossless formats, what :func:`save_image` stores is exactly :func:`stored_rgb` (i.e.
:func:`quantize` of the given RGB, projected to grey for greyscale sources).

References: PNG (Portable Network Graphics) Specification, Version 1.2 / W3C PNG 3rd ed.; TIFF
Revision 6.0 (Adobe, 1992); Exif 2.32 (CIPA DC-008); XMP Specification Part 3 (Adobe, 2020).
"""

from sfumato.io.artimage import ArtImage, ImageError
from sfumato.io.formats import IMAGE_SUFFIXES, default_output_format, output_suffix, supported_formats
from sfumato.io.read import MAX_PIXELS, MIN_SIDE, image_from_array, iter_image_paths, load_image, probe_image
from sfumato.io.tensors import from_tensor, quantize, to_tensor
from sfumato.io.write import output_bit_depth, save_image, stored_rgb

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "ArtImage",
    "ImageError",
    "default_output_format",
    "from_tensor",
    "image_from_array",
    "iter_image_paths",
    "load_image",
    "output_bit_depth",
    "output_suffix",
    "probe_image",
    "quantize",
    "save_image",
    "stored_rgb",
    "supported_formats",
    "to_tensor",
]
