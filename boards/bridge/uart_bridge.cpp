// A Verilated board (LinkedAccelerator: clk, rst, rx, tx, idle) behind a TCP socket on 127.0.0.1.
//
// Bytes from the socket are sent into the model's rx pin as 8N1 frames at `divisor` clock
// cycles per bit; the tx pin is sampled the same way and every byte goes back to the socket.
// So the host driver talks to the simulated board exactly as to a serial port
// (pyserial "socket://127.0.0.1:PORT"). Faults on the line can be injected: with the given
// probabilities a byte gets one bit flipped or is dropped, per direction, from a seeded PRNG.
//
// Usage: uart_bridge --divisor D [--port P] [--seed S] [--flip-h2b p] [--flip-b2h p]
//                    [--drop-h2b p] [--drop-b2h p]
// Prints "PORT <n>" on stdout once listening; serves one client and exits when it closes.
// When the design says it is idle and no byte is moving, the bridge sleeps in poll() instead
// of clocking the model (simulated time then stands still, which the design cannot tell).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "verilated.h"
#include BRIDGE_TOP_HEADER

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand() {  // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static double uniform() { return (next_rand() >> 11) * (1.0 / 9007199254740992.0); }

struct Faults {
    double flip = 0.0, drop = 0.0;
    long flipped = 0, dropped = 0;
    // Returns false when the byte is lost.
    bool apply(uint8_t &b) {
        if (drop > 0 && uniform() < drop) {
            ++dropped;
            return false;
        }
        if (flip > 0 && uniform() < flip) {
            b ^= uint8_t(1u << (next_rand() % 8));
            ++flipped;
        }
        return true;
    }
};

int main(int argc, char **argv) {
    long divisor = 16;
    int port = 0;
    Faults h2b, b2h;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        const char *v = argv[i + 1];
        if (k == "--divisor") divisor = atol(v);
        else if (k == "--port") port = atoi(v);
        else if (k == "--seed") rng_state = strtoull(v, nullptr, 0) * 2654435761ull + 1;
        else if (k == "--flip-h2b") h2b.flip = atof(v);
        else if (k == "--flip-b2h") b2h.flip = atof(v);
        else if (k == "--drop-h2b") h2b.drop = atof(v);
        else if (k == "--drop-b2h") b2h.drop = atof(v);
        else {
            fprintf(stderr, "uart_bridge: unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (divisor < 4) {
        fprintf(stderr, "uart_bridge: divisor %ld < 4\n", divisor);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (bind(lfd, (sockaddr *)&addr, sizeof addr) || listen(lfd, 1)) {
        perror("uart_bridge: bind/listen");
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(lfd, (sockaddr *)&addr, &len);
    printf("PORT %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    int fd = accept(lfd, nullptr, nullptr);
    if (fd < 0) {
        perror("uart_bridge: accept");
        return 1;
    }
    close(lfd);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    VerilatedContext ctx;
    BRIDGE_TOP_CLASS top(&ctx);
    top.rx = 1;
    top.rst = 1;
    for (int i = 0; i < 4; ++i) {
        top.clk = 0;
        top.eval();
        top.clk = 1;
        top.eval();
    }
    top.rst = 0;

    std::deque<uint8_t> inq;       // from the host, to the rx pin
    std::vector<uint8_t> outq;     // from the tx pin, to the host
    int rx_bits = 0;               // bits of the current rx frame still to send (0: idle)
    long rx_timer = 0;
    uint16_t rx_frame = 0;
    int tx_state = 0;              // 0 idle, 1 start, 2..9 data, 10 stop
    long tx_timer = 0;
    uint8_t tx_byte = 0;
    uint64_t cycles = 0;
    uint8_t buf[4096];

    for (;;) {
        // -- socket I/O every 64 cycles, or block when nothing moves --------------------------
        if ((cycles & 63) == 0) {
            bool quiet = top.idle && inq.empty() && rx_bits == 0 && tx_state == 0 && outq.empty();
            if (!outq.empty()) {
                ssize_t n = send(fd, outq.data(), outq.size(), MSG_NOSIGNAL);
                if (n > 0) outq.erase(outq.begin(), outq.begin() + n);
                else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
            }
            if (quiet) {
                pollfd p{fd, POLLIN, 0};
                poll(&p, 1, 50);
            }
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n == 0) break;  // the host closed the connection
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
            for (ssize_t i = 0; i < n; ++i) {
                uint8_t b = buf[i];
                if (h2b.apply(b)) inq.push_back(b);
            }
        }
        // -- host -> board: drive rx --------------------------------------------------------
        if (rx_bits == 0 && !inq.empty()) {
            rx_frame = uint16_t(0x200 | (inq.front() << 1));  // start 0, data LSB first, stop 1
            inq.pop_front();
            rx_bits = 10;
            rx_timer = divisor;
        }
        if (rx_bits) {
            top.rx = rx_frame & 1;
            if (--rx_timer == 0) {
                rx_frame >>= 1;
                --rx_bits;
                rx_timer = divisor;
            }
        } else {
            top.rx = 1;
        }
        // -- clock ----------------------------------------------------------------------------
        top.clk = 0;
        top.eval();
        top.clk = 1;
        top.eval();
        ++cycles;
        // -- board -> host: sample tx in the middle of each bit ------------------------------
        int line = top.tx;
        if (tx_state == 0) {
            if (!line) {
                tx_state = 1;
                tx_timer = divisor / 2;
            }
        } else if (--tx_timer == 0) {
            if (tx_state == 1) {
                if (line) tx_state = 0;  // glitch
                else {
                    tx_state = 2;
                    tx_timer = divisor;
                    tx_byte = 0;
                }
            } else if (tx_state <= 9) {
                tx_byte |= uint8_t(line << (tx_state - 2));
                ++tx_state;
                tx_timer = divisor;
            } else {
                uint8_t b = tx_byte;
                if (line && b2h.apply(b)) outq.push_back(b);
                tx_state = 0;
            }
        }
    }
    top.final();
    fprintf(stderr, "uart_bridge: %llu cycles; faults host->board %ld flipped %ld dropped, "
            "board->host %ld flipped %ld dropped\n", (unsigned long long)cycles, h2b.flipped,
            h2b.dropped, b2h.flipped, b2h.dropped);
    return 0;
}
