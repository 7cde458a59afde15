/* numpy's Generator.permutation(n), the same values, with the memory reads overlapped.
 *
 * Why hand-written (the brief asks for a measured reason): every loader worker computes
 * the epoch's permutation of all of a split's rows before its first batch
 * (stream/partition.py). numpy's shuffle is Fisher-Yates: for i = n-1 down to 1, swap
 * a[i] with a[j], j uniform in [0, i]. Once the array outgrows the caches each swap
 * waits for a[j] from memory: 14-19 ns per row at 1.28M rows, 37-44 ns at 14M on the
 * 2-CPU test machine (best of 3; docs/scale.md), so the start-up per row grew with the
 * split. The j's do not depend on the array, only on the random stream, so this draws
 * them AHEAD swaps early and prefetches a[j] while earlier swaps run: 10.1-12.8 ns per
 * row from 10k to 14M rows against numpy's 10.8-35.8 in the same runs (best of 3); what
 * is left of the growth at 14M is the first touch of the 112 MB it fills.
 *
 * Sameness: the draws are numpy's random_interval (numpy/random/src/distributions/
 * distributions.c: the smallest bit mask >= i, 32-bit draws while i fits, rejection
 * above i), made in the same order from the same bit generator, and the swaps are done
 * in the same order, so the result and the generator's state afterwards equal numpy's
 * (tests/test_permute.py; partition.py also checks a small case once per process and
 * uses numpy where they differ, e.g. after a numpy change).
 *
 * permutation(capsule, out): capsule is bit_generator.capsule (a "BitGenerator"
 *   capsule holding a bitgen_t*); out a writable, contiguous buffer of n int64 values,
 *   filled with numpy's rng.permutation(n). The caller holds bit_generator.lock; the GIL
 *   is released while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* numpy/random/bitgen.h: the struct every numpy bit generator exposes */
typedef struct bitgen {
    void *state;
    uint64_t (*next_uint64)(void *st);
    uint32_t (*next_uint32)(void *st);
    double (*next_double)(void *st);
    uint64_t (*next_raw)(void *st);
} bitgen_t;

#define AHEAD 32   /* swaps between a draw and its use: 16 left 14M rows 1.3x slower */

static inline uint64_t random_interval(bitgen_t *g, uint64_t max) {
    uint64_t mask = max, value;
    if (max == 0) return 0;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    if (max <= 0xffffffffUL) {
        while ((value = (g->next_uint32(g->state) & mask)) > max) {}
    } else {
        while ((value = (g->next_uint64(g->state) & mask)) > max) {}
    }
    return value;
}

static void permute(bitgen_t *g, int64_t *a, int64_t n) {
    int64_t ring[AHEAD];
    int64_t next, k, i;
    for (i = 0; i < n; i++) a[i] = i;
    next = n - 1;                               /* the next i whose j is to be drawn */
    for (k = 0; k < AHEAD && next >= 1; k++, next--) {
        ring[k] = (int64_t)random_interval(g, (uint64_t)next);
        __builtin_prefetch(&a[ring[k]], 1);
    }
    for (i = n - 1, k = 0; i >= 1; i--, k = (k + 1) % AHEAD) {
        int64_t j = ring[k], t;
        if (next >= 1) {
            ring[k] = (int64_t)random_interval(g, (uint64_t)next--);
            __builtin_prefetch(&a[ring[k]], 1);
        }
        t = a[j];
        a[j] = a[i];
        a[i] = t;
    }
}

static PyObject *permutation(PyObject *self, PyObject *args) {
    PyObject *capsule;
    Py_buffer out;
    bitgen_t *g;
    if (!PyArg_ParseTuple(args, "Ow*", &capsule, &out)) return NULL;
    g = (bitgen_t *)PyCapsule_GetPointer(capsule, "BitGenerator");
    if (g == NULL) {
        PyBuffer_Release(&out);
        return NULL;
    }
    if (out.len % 8 != 0 || !PyBuffer_IsContiguous(&out, 'C')) {
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "permutation: out must be contiguous int64");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    permute(g, (int64_t *)out.buf, (int64_t)(out.len / 8));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"permutation", permutation, METH_VARARGS, "permutation(capsule, out) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "shardforge.stream._permute",
    "numpy's Generator.permutation(n) with prefetched swaps (see the source).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__permute(void) { return PyModule_Create(&module); }
