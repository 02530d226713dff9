/* echoservice: the seeds' echo service as a static Linux binary with no dependencies.
 *
 * Connects to $NATS_URL (default nats://127.0.0.1:4222), answers every request on
 * $ECHO_SUBJECT (default "svc.echo", queue group "q") with its own payload, and answers NATS
 * service discovery ($SRV.PING / $SRV.INFO) as "EchoService" 1.0.0, so `nats micro ls` lists it.
 * With $NATS_JWT it logs in with that user JWT, as seed 003 passes it (line 2 of a .creds file);
 * the user must be a bearer one (`nsc add user --bearer`), since this small example does not sign
 * the server's nonce. A user and password, or a token, in the URL (nats://USER:PASSWORD@HOST:PORT,
 * nats://TOKEN@HOST:PORT; not percent-decoded) log in as nats-server's authorization block says.
 * It speaks the NATS text protocol directly so it can be linked with -static.
 *
 *   cc -static -O2 -o echoservice echoservice.c
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;
static char id[23];
static const char* subject = "svc.echo";

static int write_all(const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static int publish(const char* to, const char* data, size_t len) {
  char head[512];
  int n = snprintf(head, sizeof head, "PUB %s %zu\r\n", to, len);
  if (n < 0 || (size_t)n >= sizeof head) return -1;
  if (write_all(head, (size_t)n) || write_all(data, len) || write_all("\r\n", 2)) return -1;
  return 0;
}

/* Reads bytes into a growing buffer; returns the number of bytes now held, or -1. */
static char* buf;
static size_t buf_len, buf_cap;
static int fill(void) {
  if (buf_cap - buf_len < 65536) {
    buf_cap = buf_cap * 2 + 65536;
    buf = realloc(buf, buf_cap);
    if (!buf) return -1;
  }
  ssize_t n = read(fd, buf + buf_len, buf_cap - buf_len);
  if (n < 0 && errno == EINTR) return 0;
  if (n <= 0) return -1;
  buf_len += (size_t)n;
  return 0;
}

/* The CONNECT fields for the URL's credentials, if it has any. */
static char login_field[1024] = "";

static int parse_url(const char* url, struct sockaddr_in* addr) {
  const char* p = strstr(url, "://");
  p = p ? p + 3 : url;
  const char* at = strchr(p, '@');
  if (at) {
    const int len = (int)(at - p);
    for (const char* c = p; c < at; ++c)
      if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) return -1; /* kept out of the JSON */
    const char* colon = memchr(p, ':', (size_t)len);
    int n = colon
                ? snprintf(login_field, sizeof login_field, ",\"user\":\"%.*s\",\"pass\":\"%.*s\"",
                           (int)(colon - p), p, (int)(at - colon - 1), colon + 1)
                : snprintf(login_field, sizeof login_field, ",\"auth_token\":\"%.*s\"", len, p);
    if (n < 0 || (size_t)n >= sizeof login_field) return -1;
    p = at + 1;
  }
  char host[256];
  const char* colon = strrchr(p, ':');
  size_t hlen = colon ? (size_t)(colon - p) : strlen(p);
  if (hlen == 0 || hlen >= sizeof host) return -1;
  memcpy(host, p, hlen);
  host[hlen] = 0;
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  memset(addr, 0, sizeof *addr);
  addr->sin_family = AF_INET;
  addr->sin_port = htons(colon ? (unsigned short)atoi(colon + 1) : 4222);
  return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -1;
}

static void reply_discovery(const char* verb, const char* reply) {
  char body[1024];
  int n;
  if (strcmp(verb, "INFO") == 0) {
    n = snprintf(
        body, sizeof body,
        "{\"type\":\"io.nats.micro.v1.info_response\",\"name\":\"EchoService\",\"id\":\"%s\","
        "\"version\":\"1.0.0\",\"metadata\":{},\"description\":\"\",\"endpoints\":[{\"name\":"
        "\"echo\",\"subject\":\"%s\",\"queue_group\":\"q\",\"metadata\":null}]}",
        id, subject);
  } else {
    n = snprintf(
        body, sizeof body,
        "{\"type\":\"io.nats.micro.v1.ping_response\",\"name\":\"EchoService\",\"id\":\"%s\","
        "\"version\":\"1.0.0\",\"metadata\":{}}",
        id);
  }
  if (n > 0 && (size_t)n < sizeof body) publish(reply, body, (size_t)n);
}

int main(int argc, char** argv) {
  const char* url = getenv("NATS_URL");
  if (!url || !*url) url = "nats://127.0.0.1:4222";
  if (getenv("ECHO_SUBJECT") && *getenv("ECHO_SUBJECT")) subject = getenv("ECHO_SUBJECT");
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* The URL as it was given, but never its credentials: this line goes to the workload's log. */
  const char *scheme_end = strstr(url, "://"), *at = strchr(url, '@');
  if (scheme_end && at && at > scheme_end)
    printf("Echo service using NATS url '%.*s***%s'\n", (int)(scheme_end + 3 - url), url, at);
  else
    printf("Echo service using NATS url '%s'\n", url);
  if (argc > 1) {
    printf("Arguments:");
    for (int i = 1; i < argc; ++i) printf(" %s", argv[i]);
    printf("\n");
  }

  static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  for (int i = 0; i < 22; ++i) id[i] = digits[rand() % 62];

  struct sockaddr_in addr;
  if (parse_url(url, &addr) != 0) {
    fprintf(stderr,
            "echoservice: cannot use NATS url '%s' (expected nats://[USER:PASSWORD@]IPv4:port)\n",
            url);
    return 1;
  }
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) {
    fprintf(stderr, "echoservice: cannot connect to %s: %s\n", url, strerror(errno));
    return 1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  /* A JWT is base64url and dots: nothing in it needs escaping in JSON. */
  const char* jwt = getenv("NATS_JWT");
  char jwt_field[4096] = "";
  if (jwt && *jwt) {
    static const char b64url_dot[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    if (strlen(jwt) > sizeof jwt_field - 16 || strspn(jwt, b64url_dot) != strlen(jwt)) {
      fprintf(stderr,
              "echoservice: NATS_JWT is not a JWT (expected base64url parts joined by dots)\n");
      return 1;
    }
    snprintf(jwt_field, sizeof jwt_field, ",\"jwt\":\"%s\"", jwt);
  }
  char proto[8192];
  int n = snprintf(
      proto, sizeof proto,
      "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"echoservice\",\"lang\":\"c\","
      "\"version\":\"1.0.0\",\"protocol\":1,\"headers\":false%s%s}\r\n"
      "SUB %s q 1\r\nSUB $SRV.PING 2\r\nSUB $SRV.PING.EchoService 3\r\n"
      "SUB $SRV.INFO 4\r\nSUB $SRV.INFO.EchoService 5\r\nPING\r\n",
      jwt_field, login_field, subject);
  if (n < 0 || (size_t)n >= sizeof proto) return 1;
  if (write_all(proto, (size_t)n)) return 1;
  printf("Starting echo service\n");

  for (;;) {
    char* eol;
    while (!(eol = memmem(buf, buf_len, "\r\n", 2))) {
      if (fill() != 0) {
        fprintf(stderr, "echoservice: connection closed\n");
        return 1;
      }
    }
    size_t line_len = (size_t)(eol - buf);
    char line[1024];
    if (line_len >= sizeof line) return 1;
    memcpy(line, buf, line_len);
    line[line_len] = 0;
    size_t consumed = line_len + 2;

    if (strncmp(line, "MSG ", 4) == 0) {
      char subj[256] = {0}, sid[32] = {0}, reply[256] = {0};
      size_t size = 0;
      char* tok[5];
      int count = 0;
      for (char* t = strtok(line + 4, " "); t && count < 5; t = strtok(NULL, " ")) tok[count++] = t;
      if (count == 4) {
        snprintf(subj, sizeof subj, "%s", tok[0]);
        snprintf(sid, sizeof sid, "%s", tok[1]);
        snprintf(reply, sizeof reply, "%s", tok[2]);
        size = strtoul(tok[3], NULL, 10);
      } else if (count == 3) {
        snprintf(subj, sizeof subj, "%s", tok[0]);
        snprintf(sid, sizeof sid, "%s", tok[1]);
        size = strtoul(tok[2], NULL, 10);
      } else {
        return 1;
      }
      while (buf_len < consumed + size + 2) {
        if (fill() != 0) return 1;
      }
      const char* payload = buf + consumed;
      if (reply[0]) {
        if (strcmp(sid, "1") == 0) {
          publish(reply, payload, size);
        } else {
          reply_discovery(strstr(subj, "INFO") ? "INFO" : "PING", reply);
        }
      }
      consumed += size + 2;
    } else if (strcmp(line, "PING") == 0) {
      if (write_all("PONG\r\n", 6)) return 1;
    } else if (strncmp(line, "-ERR", 4) == 0) {
      fprintf(stderr, "echoservice: server error: %s\n", line);
    }
    memmove(buf, buf + consumed, buf_len - consumed);
    buf_len -= consumed;
  }
}
