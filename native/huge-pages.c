/*
 * blyd's optional native helper: asks Linux to back a WebAssembly memory
 * with transparent huge pages (madvise MADV_HUGEPAGE, then MADV_COLLAPSE on
 * what is already mapped). V8 maps wasm memory with 4 KiB pages and never
 * gives this advice itself; with THP in "madvise" mode (the default of many
 * distributions) a model's weights in tfjs-wasm memory then need one TLB
 * entry per 4 KiB, and every decode step walks page tables for all of them.
 * See docs/inference-performance.md ("Huge pages").
 *
 * adviseHugePages(buffer: ArrayBuffer, reserveBytes: number)
 *   -> { base: string (hex), length, advisedBytes, adviseErrno, collapseErrno }
 * advisedBytes is reserveBytes when the whole reservation took the advice
 * (pages the memory grows into later are covered too), else the buffer's
 * length, else 0. Errno values are 0 on success.
 *
 * Built by scripts/build-native.js at install; never required.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define HUGE_PAGE_BYTES (2u * 1024u * 1024u)

static napi_status set_number (napi_env env, napi_value obj, const char *name, double value) {
  napi_value v;
  napi_status s = napi_create_double(env, value, &v);
  if (s != napi_ok) {
    return s;
  }
  return napi_set_named_property(env, obj, name, v);
}

static napi_value advise (napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    return NULL;
  }
  bool is_buffer = false;
  if (argc < 1 || napi_is_arraybuffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "adviseHugePages: the first argument must be an ArrayBuffer");
    return NULL;
  }
  double reserve = 0;
  if (argc >= 2 && napi_get_value_double(env, argv[1], &reserve) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "adviseHugePages: reserveBytes must be a number");
    return NULL;
  }
  void *data = NULL;
  size_t length = 0;
  if (napi_get_arraybuffer_info(env, argv[0], &data, &length) != napi_ok) {
    return NULL;
  }
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t base = (uintptr_t)data;
  int advise_errno = 0;
  int collapse_errno = 0;
  double advised = 0;
  if (data == NULL || length == 0 || page <= 0 || base % (uintptr_t)page != 0) {
    advise_errno = EINVAL;
  } else {
    size_t whole = reserve > (double)length ? (size_t)reserve : length;
    whole -= whole % (size_t)page;
    if (madvise(data, whole, MADV_HUGEPAGE) == 0) {
      advised = (double)whole;
    } else if (whole > length && madvise(data, length - length % (size_t)page, MADV_HUGEPAGE) == 0) {
      advised = (double)length;
    } else {
      advise_errno = errno;
    }
    /* what is mapped already becomes huge pages now (Linux >= 6.1; best effort) */
    size_t mapped = length - length % HUGE_PAGE_BYTES;
    if (advised > 0 && mapped > 0 && madvise(data, mapped, MADV_COLLAPSE) != 0) {
      collapse_errno = errno;
    }
  }
  napi_value out;
  char hex[2 + 2 * sizeof(uintptr_t) + 1];
  snprintf(hex, sizeof(hex), "0x%lx", (unsigned long)base);
  napi_value base_value;
  if (napi_create_object(env, &out) != napi_ok ||
      napi_create_string_utf8(env, hex, NAPI_AUTO_LENGTH, &base_value) != napi_ok ||
      napi_set_named_property(env, out, "base", base_value) != napi_ok ||
      set_number(env, out, "length", (double)length) != napi_ok ||
      set_number(env, out, "advisedBytes", advised) != napi_ok ||
      set_number(env, out, "adviseErrno", advise_errno) != napi_ok ||
      set_number(env, out, "collapseErrno", collapse_errno) != napi_ok) {
    return NULL;
  }
  return out;
}

NAPI_MODULE_INIT () {
  napi_value fn;
  if (napi_create_function(env, "adviseHugePages", NAPI_AUTO_LENGTH, advise, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "adviseHugePages", fn) != napi_ok) {
    return NULL;
  }
  return exports;
}
