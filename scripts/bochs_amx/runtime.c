/* Freestanding runtime for Bochs payloads: port 0xE9 output, mem*, IDT that
 * reports CPU exceptions, and Bochs shutdown via port 0x8900. */
#include "payload.h"

#define START_MARK "@@GENRT_BOCHS_START@@\n"
#define DONE_MARK "@@GENRT_BOCHS_DONE@@\n"
#define FAIL_MARK "\n@@GENRT_BOCHS_FAIL@@ "

static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

void e9_putc(char c) { outb(0xe9, (uint8_t)c); }

void e9_write(const char *s, unsigned long n) {
  while (n--) outb(0xe9, (uint8_t)*s++);
}

void e9_puts(const char *s) { e9_write(s, strlen(s)); }

static void e9_hex(uint64_t v, int digits) {
  char buf[16];
  for (int i = digits - 1; i >= 0; --i, v >>= 4) buf[i] = "0123456789abcdef"[v & 15];
  e9_write(buf, (unsigned long)digits);
}
void e9_hex32(uint32_t v) { e9_hex(v, 8); }
void e9_hex64(uint64_t v) { e9_hex(v, 16); }

void e9_hex32_lines(const uint32_t *v, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    e9_hex32(v[i]);
    e9_putc(i % 16 == 15 ? '\n' : ' ');
  }
  e9_putc('\n');
}

void e9_dec(uint64_t v) {
  char buf[20];
  int i = 20;
  do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  e9_write(buf + i, (unsigned long)(20 - i));
}

__attribute__((noreturn)) void __genrt_shutdown(void) {
  for (const char *p = "Shutdown"; *p; ++p) outb(0x8900, (uint8_t)*p);
  for (;;) __asm__ volatile("cli; hlt");
}

__attribute__((noreturn)) void payload_abort(const char *msg) {
  e9_puts(FAIL_MARK);
  e9_puts(msg);
  e9_putc('\n');
  __genrt_shutdown();
}

void __genrt_done(void) {
  e9_puts(DONE_MARK);
  __genrt_shutdown();
}

/* Called from the exception stubs in crt0.S with a pointer to
 * {vector, error code, rip, cs, rflags, ...}. */
__attribute__((noreturn)) void __genrt_exception(const uint64_t *f) {
  uint64_t cr2;
  __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
  e9_puts(FAIL_MARK);
  e9_puts("CPU exception ");
  e9_dec(f[0]);
  e9_puts(" err=");
  e9_hex64(f[1]);
  e9_puts(" rip=");
  e9_hex64(f[2]);
  e9_puts(" cr2=");
  e9_hex64(cr2);
  e9_putc('\n');
  __genrt_shutdown();
}

extern const uint64_t __genrt_exc_stubs[];   /* 32 stubs, 16 bytes apart */
static uint64_t idt[64] __attribute__((aligned(16)));

void __genrt_init(void) {
  e9_puts(START_MARK);
  for (int v = 0; v < 32; ++v) {
    uint64_t h = (uint64_t)__genrt_exc_stubs + 16 * (uint64_t)v;
    idt[2 * v] = (h & 0xffff) | (0x18ull << 16) | (0x8eull << 40) |
                 ((h >> 16 & 0xffff) << 48);
    idt[2 * v + 1] = h >> 32;
  }
  struct __attribute__((packed)) { uint16_t limit; uint64_t base; } d = {
      sizeof(idt) - 1, (uint64_t)idt};
  __asm__ volatile("lidt %0" : : "m"(d));
  typedef void (*ctor_t)(void);
  extern ctor_t __init_array_start[], __init_array_end[];
  for (ctor_t *c = __init_array_start; c != __init_array_end; ++c) (*c)();
}

void *memcpy(void *dst, const void *src, size_t n) {
  void *d = dst;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  if ((uintptr_t)dst - (uintptr_t)src >= n) return memcpy(dst, src, n);
  void *d = (char *)dst + n - 1;
  const void *s = (const char *)src + n - 1;
  __asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  void *d = dst;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const unsigned char *x = a, *y = b;
  for (; n; --n, ++x, ++y)
    if (*x != *y) return *x < *y ? -1 : 1;
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

/* Minimal C++ ABI support: global destructors never run, no heap. */
void *__dso_handle;
int __cxa_atexit(void (*fn)(void *), void *arg, void *dso) {
  (void)fn, (void)arg, (void)dso;
  return 0;
}
void __cxa_pure_virtual(void) { payload_abort("pure virtual call"); }
void __genrt_delete(void *p) __asm__("_ZdlPv");
void __genrt_delete(void *p) { (void)p; }
void __genrt_delete_sized(void *p, size_t n) __asm__("_ZdlPvm");
void __genrt_delete_sized(void *p, size_t n) { (void)p, (void)n; }
