/* nex host services for WebAssembly functions (C and C++ guests built for wasm32-wasi).
 *
 * The functions are imported from the module "nex"; nex provides them to every function it
 * runs. Each call blocks until the node answers and returns:
 *   >= 0  success: the length of the call's result, which nex_result() copies out;
 *   <  0  failure: minus the host-service code (-400 bad request, -403 refused by the node's
 *         policy, -404 not found, -500 failed, -503 unavailable, -504 timed out); nex_result()
 *         then gives the error message.
 * Strings are (pointer, length) pairs and need no terminating NUL. See docs/host-services.md. */
#ifndef NEX_WASM_NEX_H
#define NEX_WASM_NEX_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NEX_IMPORT(name) __attribute__((import_module("nex"), import_name(name)))

/* Copies up to `capacity` bytes of the last call's result (or error message) to `buffer`;
 * returns the number of bytes copied. */
NEX_IMPORT("result") int32_t nex_result(void* buffer, uint32_t capacity);

/* Key-value: the workload's own bucket. kv_get of a missing key fails with -404. kv_set's
 * result is {"revision":N,"success":true}; kv_keys' a JSON array of the keys. */
NEX_IMPORT("kv_get") int32_t nex_kv_get(const char* key, uint32_t key_len);
NEX_IMPORT("kv_set")
int32_t nex_kv_set(const char* key, uint32_t key_len, const void* value, uint32_t value_len);
NEX_IMPORT("kv_delete") int32_t nex_kv_delete(const char* key, uint32_t key_len);
NEX_IMPORT("kv_keys") int32_t nex_kv_keys(void);

/* Object store: the workload's own bucket. object_put's result is the object's info (JSON);
 * object_list's a JSON array of them; object_get of a missing object fails with -404. */
NEX_IMPORT("object_get") int32_t nex_object_get(const char* name, uint32_t name_len);
NEX_IMPORT("object_put")
int32_t nex_object_put(const char* name, uint32_t name_len, const void* data, uint32_t data_len);
NEX_IMPORT("object_delete") int32_t nex_object_delete(const char* name, uint32_t name_len);
NEX_IMPORT("object_list") int32_t nex_object_list(void);

/* Messaging on the workload's NATS, to subjects the node allows. request's result is the
 * answer; request_many's every answer, each as a little-endian uint32 length then the bytes. */
NEX_IMPORT("publish")
int32_t nex_publish(const char* subject, uint32_t subject_len, const void* data, uint32_t data_len);
NEX_IMPORT("request")
int32_t nex_request(const char* subject, uint32_t subject_len, const void* data, uint32_t data_len);
NEX_IMPORT("request_many")
int32_t nex_request_many(const char* subject, uint32_t subject_len, const void* data,
                         uint32_t data_len);

/* HTTP: method is get, post, put, patch, delete or head; headers is a JSON object of request
 * headers (or empty). The result is the response's body; nex_http_status() its status. */
NEX_IMPORT("http_request")
int32_t nex_http_request(const char* method, uint32_t method_len, const char* url, uint32_t url_len,
                         const char* headers_json, uint32_t headers_len, const void* body,
                         uint32_t body_len);
NEX_IMPORT("http_status") int32_t nex_http_status(void);

#undef NEX_IMPORT

#ifdef __cplusplus
}
#endif

#endif /* NEX_WASM_NEX_H */
