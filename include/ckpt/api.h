#ifndef CKPT_API_H
#define CKPT_API_H
/* libckpt.so exports only what is marked CKPT_API (everything else is hidden); the exported
 * names are also listed in the library's linker version script (cmake/libckpt.map). */
#if defined(__GNUC__) || defined(__clang__)
#define CKPT_API __attribute__((visibility("default")))
#else
#define CKPT_API
#endif
#endif
