/* Decode one rectangle of a baseline or progressive JPEG with libjpeg(-turbo), and no more.
 *
 * Why hand-written (the brief asks for a measured reason): no maintained Python package
 * exposes libjpeg-turbo's partial decode (jpeg_crop_scanline + jpeg_skip_scanlines:
 * simplejpeg, PyTurboJPEG 1.x, OpenCV and Pillow decode whole images; PyTurboJPEG's
 * crop is a lossless transform that re-encodes). On the loader benchmark's photos
 * (stored <= 256 px, random-resized crops) decoding only the crop took 153 us per image
 * against 195 us for simplejpeg's whole decode into a buffer (one core, 300 images,
 * best of 7; BENCHMARKS.md "Loaders" has the loader-level figure).
 *
 * What it does: rows above the crop are skipped (jpeg_skip_scanlines: still entropy
 * decoded, as baseline JPEG requires, but not inverse-transformed or colour converted),
 * columns outside it are not inverse-transformed (jpeg_crop_scanline, which widens the
 * range to iMCU boundaries), and decoding stops after the crop's last row. Pixels are
 * libjpeg's accurate integer IDCT with fancy upsampling, the settings of simplejpeg's
 * and OpenCV's whole decodes; the Python caller widens the rectangle by one pixel on
 * each side so that chroma upsampling at the crop's edges sees the same neighbours as a
 * whole decode (tests/test_jpeg_region.py checks pixel equality). Any libjpeg warning
 * (truncated or damaged data) is an error, as simplejpeg's strict mode: the caller then
 * leaves the sample to the whole-image decoders.
 *
 * decode_region(data, top, left, height, width, out) -> (image_w, image_h, row_w, x_off)
 *   data: bytes-like JPEG; out: writable contiguous buffer of at least height * row_w * 3
 *   bytes (image_w * height * 3 always suffices). Rows [top, top + height) are written to
 *   out as RGB rows of row_w pixels; column `left` of the image is at x_off in each row.
 *   Raises JpegError (a ValueError) on data libjpeg refuses or warns about, on a
 *   rectangle outside the image, or on a buffer that is too small. The GIL is released
 *   while libjpeg runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdio.h>
#include <jpeglib.h>

static PyObject *JpegError;

struct region_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo) {
    struct region_error *err = (struct region_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) on_error(cinfo);      /* a warning: corrupt or truncated data */
}

/* The libjpeg part, run without the GIL. Returns 0, or 1 with err->message set. */
static int decode(struct jpeg_decompress_struct *cinfo, struct region_error *err,
                  const unsigned char *data, Py_ssize_t size, JDIMENSION top, JDIMENSION left,
                  JDIMENSION height, JDIMENSION width, unsigned char *out, Py_ssize_t out_size,
                  JDIMENSION *image_w, JDIMENSION *image_h, JDIMENSION *row_w, JDIMENSION *x_off) {
    if (setjmp(err->jump)) {
        jpeg_destroy_decompress(cinfo);
        return 1;
    }
    jpeg_create_decompress(cinfo);
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_read_header(cinfo, TRUE);
    *image_w = cinfo->image_width;
    *image_h = cinfo->image_height;
    if (width == 0 || height == 0 || left + width > cinfo->image_width
            || top + height > cinfo->image_height) {
        snprintf(err->message, sizeof err->message,
                 "rectangle %ux%u at (%u, %u) is outside the %ux%u image",
                 width, height, left, top, cinfo->image_width, cinfo->image_height);
        jpeg_destroy_decompress(cinfo);
        return 1;
    }
    cinfo->out_color_space = JCS_RGB;
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(cinfo);
    JDIMENSION x = left, w = width;
    if (w < cinfo->output_width) jpeg_crop_scanline(cinfo, &x, &w);
    else x = 0;
    if ((Py_ssize_t)height * w * 3 > out_size) {
        snprintf(err->message, sizeof err->message,
                 "output buffer of %zd bytes is smaller than %u rows of %u RGB pixels",
                 out_size, height, w);
        jpeg_destroy_decompress(cinfo);
        return 1;
    }
    if (top > 0 && jpeg_skip_scanlines(cinfo, top) != top) {
        snprintf(err->message, sizeof err->message, "could not skip %u rows", top);
        jpeg_destroy_decompress(cinfo);
        return 1;
    }
    for (JDIMENSION y = 0; y < height;) {
        JSAMPROW row = out + (size_t)y * w * 3;
        JDIMENSION got = jpeg_read_scanlines(cinfo, &row, 1);
        if (got == 0) {
            snprintf(err->message, sizeof err->message, "no data for row %u", top + y);
            jpeg_destroy_decompress(cinfo);
            return 1;
        }
        y += got;
    }
    jpeg_abort_decompress(cinfo);      /* the rows below the rectangle are never decoded */
    jpeg_destroy_decompress(cinfo);
    *row_w = w;
    *x_off = left - x;
    return 0;
}

static PyObject *decode_region(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    unsigned int top, left, height, width;
    if (!PyArg_ParseTuple(args, "y*IIIIw*", &data, &top, &left, &height, &width, &out))
        return NULL;
    struct jpeg_decompress_struct cinfo;
    struct region_error err;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    err.message[0] = '\0';
    JDIMENSION image_w = 0, image_h = 0, row_w = 0, x_off = 0;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = decode(&cinfo, &err, data.buf, data.len, top, left, height, width,
                    out.buf, out.len, &image_w, &image_h, &row_w, &x_off);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (failed) {
        PyErr_SetString(JpegError, err.message);
        return NULL;
    }
    return Py_BuildValue("(IIII)", image_w, image_h, row_w, x_off);
}

static PyMethodDef methods[] = {
    {"decode_region", decode_region, METH_VARARGS,
     "decode_region(data, top, left, height, width, out) -> (image_w, image_h, row_w, x_off)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpeg_region",
    "Decode one rectangle of a JPEG with libjpeg (see the comment at the top of the source).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__jpeg_region(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    JpegError = PyErr_NewException("shardforge.formats._jpeg_region.JpegError",
                                   PyExc_ValueError, NULL);
    if (JpegError == NULL || PyModule_AddObject(m, "JpegError", JpegError) < 0) {
        Py_XDECREF(JpegError);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
