/* hostcall: a native service calling nex host services, as a static Linux binary.
 *
 * nex gives every native workload three environment variables:
 *   NEX_HOSTSERVICES_NATS_URL        the node's internal NATS, with this workload's own user
 *   NEX_HOSTSERVICES_SUBJECT_PREFIX  hostint.{id}.rpc.{namespace}.{workload}
 *   NEX_HOSTSERVICES_INBOX_PREFIX    the only prefix this user may receive replies under
 * A call is a request on {prefix}.{service}.{method} with its parameter in a header and its
 * value in the body; the answer's x-nex-hs-code and x-nex-hs-msg headers say how it went
 * (docs/host-services.md). Any NATS client can do this: set the inbox prefix and request.
 *
 * This program makes the calls its arguments name, one after the other, and prints each answer
 * (so it lands in the workload's log):
 *   hostcall kv set greeting hello   kv get greeting   messaging publish news.today "it rained"
 * An argument that starts with "hostint." is used as the whole subject instead of
 * {prefix}.{service}.{method}, with "{id}" standing for this workload's id: a way to see that
 * the node refuses any subject that is not this workload's own.
 * It speaks the NATS text protocol directly so it can be linked with -static:
 *   cc -static -O2 -o hostcall hostcall.c
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fd = -1;
static char buf[1 << 20];
static size_t buf_len;

static int write_all(const char* p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads until buf holds `want` bytes; -1 when the connection ends. */
static int need(size_t want) {
  while (buf_len < want) {
    if (want > sizeof buf) return -1;
    ssize_t n = read(fd, buf + buf_len, sizeof buf - buf_len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    buf_len += (size_t)n;
  }
  return 0;
}

/* Takes one protocol line (without CRLF) off the front of buf into `line`. */
static int next_line(char* line, size_t cap) {
  for (;;) {
    char* eol = memmem(buf, buf_len, "\r\n", 2);
    if (eol) {
      size_t len = (size_t)(eol - buf);
      if (len >= cap) return -1;
      memcpy(line, buf, len);
      line[len] = 0;
      memmove(buf, eol + 2, buf_len - len - 2);
      buf_len -= len + 2;
      return 0;
    }
    if (need(buf_len + 1) != 0) return -1;
  }
}

/* nats://user:password@host:port */
static int connect_url(const char* url, char* user, char* pass) {
  const char* p = strstr(url, "://");
  p = p ? p + 3 : url;
  const char* at = strchr(p, '@');
  user[0] = pass[0] = 0;
  if (at) {
    const char* colon = memchr(p, ':', (size_t)(at - p));
    if (!colon) return -1;
    snprintf(user, 128, "%.*s", (int)(colon - p), p);
    snprintf(pass, 128, "%.*s", (int)(at - colon - 1), colon + 1);
    p = at + 1;
  }
  char host[64];
  const char* colon = strrchr(p, ':');
  if (!colon || (size_t)(colon - p) >= sizeof host) return -1;
  snprintf(host, sizeof host, "%.*s", (int)(colon - p), p);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((unsigned short)atoi(colon + 1))};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return -1;
  fd = socket(AF_INET, SOCK_STREAM, 0);
  return fd >= 0 && connect(fd, (struct sockaddr*)&addr, sizeof addr) == 0 ? 0 : -1;
}

/* The header that carries a method's parameter. */
static const char* param_header(const char* service) {
  if (!strcmp(service, "kv")) return "x-keyvalue-key";
  if (!strcmp(service, "objectstore")) return "x-object-name";
  if (!strcmp(service, "messaging")) return "x-subject";
  if (!strcmp(service, "http")) return "x-http-url";
  return NULL;
}

/* One call: prints "service.method -> code message" and the body; returns the code. */
static int call(const char* subject, const char* label, const char* header, const char* param,
                const char* value, const char* inbox) {
  char head[4096];
  int hl = snprintf(head, sizeof head, "NATS/1.0\r\n");
  if (header && param)
    hl += snprintf(head + hl, sizeof head - (size_t)hl, "%s: %s\r\n", header, param);
  hl += snprintf(head + hl, sizeof head - (size_t)hl, "\r\n");
  size_t vl = value ? strlen(value) : 0;
  char proto[4096];
  int n =
      snprintf(proto, sizeof proto, "HPUB %s %s %d %zu\r\n", subject, inbox, hl, (size_t)hl + vl);
  if (write_all(proto, (size_t)n) || write_all(head, (size_t)hl) ||
      write_all(value ? value : "", vl) || write_all("\r\n", 2))
    return -1;
  char line[4096];
  for (;;) {
    if (next_line(line, sizeof line) != 0) return -1;
    if (!strcmp(line, "PING")) {
      write_all("PONG\r\n", 6);
      continue;
    }
    if (!strncmp(line, "-ERR", 4)) {
      printf("%s -> refused by the NATS server: %s\n", label, line);
      return 403;
    }
    if (strncmp(line, "HMSG ", 5) != 0) continue;
    /* HMSG subject sid [reply] header_len total_len */
    char* last = strrchr(line, ' ');
    size_t total = strtoul(last + 1, NULL, 10);
    *last = 0;
    size_t hlen = strtoul(strrchr(line, ' ') + 1, NULL, 10);
    if (need(total + 2) != 0) return -1;
    int code = 0;
    char msg[1024] = "";
    char* h = memmem(buf, hlen, "x-nex-hs-code: ", 15);
    if (h) code = atoi(h + 15);
    char* m = memmem(buf, hlen, "x-nex-hs-msg: ", 14);
    if (m) {
      char* end = memmem(m, hlen - (size_t)(m - buf), "\r\n", 2);
      snprintf(msg, sizeof msg, "%.*s", (int)(end - m - 14), m + 14);
    }
    printf("%s -> %d %s\n", label, code, msg);
    if (total > hlen) printf("%.*s\n", (int)(total - hlen), buf + hlen);
    memmove(buf, buf + total + 2, buf_len - total - 2);
    buf_len -= total + 2;
    return code;
  }
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char* url = getenv("NEX_HOSTSERVICES_NATS_URL");
  const char* prefix = getenv("NEX_HOSTSERVICES_SUBJECT_PREFIX");
  const char* inbox_prefix = getenv("NEX_HOSTSERVICES_INBOX_PREFIX");
  if (!url || !prefix || !inbox_prefix) {
    fprintf(stderr, "hostcall: run me as a nex workload (NEX_HOSTSERVICES_* are not set)\n");
    return 1;
  }
  char user[128], pass[128];
  if (connect_url(url, user, pass) != 0) {
    fprintf(stderr, "hostcall: cannot connect to the node's internal NATS\n");
    return 1;
  }
  char inbox[256];
  snprintf(inbox, sizeof inbox, "%s.reply", inbox_prefix);
  char proto[1024];
  int n =
      snprintf(proto, sizeof proto,
               "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"hostcall\",\"lang\":\"c\","
               "\"version\":\"1.0.0\",\"protocol\":1,\"headers\":true,\"no_responders\":true,"
               "\"user\":\"%s\",\"pass\":\"%s\"}\r\nSUB %s 1\r\n",
               user, pass, inbox);
  if (write_all(proto, (size_t)n)) return 1;

  int failures = 0;
  for (int i = 1; i < argc;) {
    char subject[512], label[512];
    const char* service = argv[i];
    if (!strncmp(service, "hostint.",
                 8)) { /* a whole subject: hostint.{id}.rpc.{ns}.{wl}.{svc}.{m} */
      const char* self = strstr(service, "{id}");
      if (self) { /* this workload's id, the second token of the prefix */
        const char* id = prefix + 8;
        snprintf(subject, sizeof subject, "%.*s%.*s%s", (int)(self - service), service,
                 (int)(strchr(id, '.') - id), id, self + 4);
      } else {
        snprintf(subject, sizeof subject, "%s", service);
      }
      snprintf(label, sizeof label, "%s", subject);
      char* svc = subject;
      for (int dots = 0; dots < 5 && svc; ++dots) svc = strchr(svc + 1, '.');
      static char svc_name[64];
      snprintf(svc_name, sizeof svc_name, "%s", svc ? svc + 1 : "");
      if (strchr(svc_name, '.')) *strchr(svc_name, '.') = 0;
      service = svc_name;
      i += 1;
    } else {
      if (i + 1 >= argc) break;
      snprintf(subject, sizeof subject, "%s.%s.%s", prefix, argv[i], argv[i + 1]);
      snprintf(label, sizeof label, "%s.%s", argv[i], argv[i + 1]);
      i += 2;
    }
    const char* header = param_header(service);
    const char *param = NULL, *value = NULL;
    const char* method = strrchr(subject, '.') + 1;
    int takes_param = strcmp(method, "keys") && strcmp(method, "list");
    int takes_value = !strcmp(method, "set") || !strcmp(method, "put") ||
                      !strcmp(method, "publish") || !strcmp(method, "request") ||
                      !strcmp(method, "requestMany") || !strcmp(method, "post");
    if (takes_param && i < argc) param = argv[i++];
    if (takes_value && i < argc) value = argv[i++];
    if (call(subject, label, header, param, value, inbox) != 200) ++failures;
  }
  printf("hostcall: done, %d call(s) failed\n", failures);
  /* Stay up like a service, so the node keeps the workload (and its log) around. */
  for (;;) pause();
}
