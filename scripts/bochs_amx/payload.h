/* Runtime provided to Bochs AMX payloads (see run.py). Entry point:
 *     extern "C" void payload_main(void);
 * Returning from payload_main counts as success; payload_abort() or any CPU
 * exception counts as failure. All output goes to Bochs port 0xE9 (stdout). */
#ifndef GENRT_BOCHS_PAYLOAD_H
#define GENRT_BOCHS_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void payload_main(void);

void e9_putc(char c);
void e9_write(const char *s, unsigned long n);
void e9_puts(const char *s);               /* no newline appended */
void e9_hex32(uint32_t v);                 /* 8 hex digits, no prefix */
void e9_hex64(uint64_t v);                 /* 16 hex digits, no prefix */
void e9_dec(uint64_t v);
void e9_hex32_lines(const uint32_t *v, uint64_t n);  /* n values, 16 per line */
__attribute__((noreturn)) void payload_abort(const char *msg);

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

static inline uint64_t rdtsc64(void) {     /* ~ retired instructions in Bochs */
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

#ifdef __cplusplus
}
#endif
#endif
