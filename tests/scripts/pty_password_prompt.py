#!/usr/bin/env python3
"""Runs `WARDEN -c CONFIG user add NAME` on a pseudo-terminal, answers its
two password prompts with FIRST and SECOND, and prints one JSON object:
{"exit": status, "terminal": everything the terminal showed}.

Each answer is typed only once the terminal's echo is off (read from the
slave side's termios), as a person would after the prompt appeared: typing
earlier would be echoed by the terminal driver whatever the program does.
Standard library only (pty, termios), so python3 is all it needs
(scripts/install-test-deps installs it).
"""
import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import time

TIMEOUT = 30.0


def main():
    warden, config, name, first, second = sys.argv[1:6]
    master, slave = os.openpty()

    def take_terminal():
        # A new session (start_new_session) whose controlling terminal is
        # the slave: rpassword opens /dev/tty.
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [warden, "-c", config, "user", "add", name],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,
        env={**os.environ, "NO_COLOR": "1"},
    )
    seen = bytearray()

    def pump(wait):
        ready, _, _ = select.select([master], [], [], wait)
        if ready:
            try:
                seen.extend(os.read(master, 4096))
            except OSError:
                pass

    def expect(token):
        deadline = time.monotonic() + TIMEOUT
        while token not in seen:
            if time.monotonic() > deadline or proc.poll() is not None:
                pump(0.2)
                if token in seen:
                    return
                sys.exit(f"no {token!r} on the terminal; it showed {bytes(seen)!r}")
            pump(0.1)

    def echo_off():
        deadline = time.monotonic() + TIMEOUT
        while termios.tcgetattr(slave)[3] & termios.ECHO:
            if time.monotonic() > deadline:
                sys.exit("the terminal's echo never went off")
            pump(0.01)

    for prompt, answer in ((b"Password: ", first), (b"Password (again): ", second)):
        expect(prompt)
        echo_off()
        os.write(master, answer.encode() + b"\n")

    try:
        code = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        sys.exit(f"warden did not exit; the terminal showed {bytes(seen)!r}")
    pump(0.2)
    os.set_blocking(master, False)
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen.extend(chunk)
    print(json.dumps({"exit": code, "terminal": seen.decode("utf-8", "replace")}))


if __name__ == "__main__":
    main()
