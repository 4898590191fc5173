"""Runs the Python example against a real specd up on the default models.

    ./gen.sh && SPECD=/tmp/specd /usr/bin/python3 -m unittest -v

`.ci/run` runs it, after installing Debian's packages (docs/clients.md).
"""
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import unittest

import specd_client as sc
from specd_client import grpc, pb

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SPECD = os.environ.get("SPECD")
PROMPT = "Once upon a time"


def specd(*args):
    return subprocess.run([SPECD, *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


class ExampleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not SPECD:
            raise RuntimeError("set SPECD to a specd binary (go build -o /tmp/specd ./cmd/specd)")
        cls.dir = tempfile.TemporaryDirectory()
        keys = os.path.join(cls.dir.name, "keys.txt")
        cls.key = specd("key", "new", "all", "--append", keys).strip()
        cls.one = specd("key", "new", "one", "--streams", "1", "--append", keys).strip()
        cls.up = subprocess.Popen([SPECD, "up", "--listen", "127.0.0.1:0", "--api-keys", keys, "--log-level", "warn"],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        cls.addr = None
        while cls.addr is None:
            line = cls.up.stderr.readline()
            if not line or time.time() > deadline:
                cls.up.kill()
                raise RuntimeError("specd up did not start serving")
            m = re.search(r"serving specd\.v1\.GenerationService on (\S+)", line)
            if m:
                cls.addr = m.group(1)
        # Keep reading its log, so that a full pipe never blocks it.
        threading.Thread(target=cls.up.stderr.read, daemon=True).start()
        while True:
            try:
                if sc.health(cls.addr) == "SERVING":
                    break
            except grpc.RpcError:
                pass
            if time.time() > deadline:
                raise RuntimeError("router not SERVING after 60 s")
            time.sleep(0.1)
        cls.stub = sc.connect(cls.addr)

    @classmethod
    def tearDownClass(cls):
        cls.up.terminate()
        cls.up.wait(timeout=30)
        cls.up.stderr.close()
        cls.dir.cleanup()

    def test_health(self):
        self.assertEqual(sc.health(self.addr, ""), "SERVING")
        self.assertEqual(sc.health(self.addr, "specd.v1.GenerationService"), "SERVING")

    def test_same_text_as_specd_generate(self):
        keyfile = os.path.join(self.dir.name, "all.key")
        with open(keyfile, "w") as f:
            f.write(self.key)
        for temp, seed in ((0, 0), (0.8, 7), (0.8, 2**64 - 1)):
            ids, text, final = sc.generate(self.stub, pb.GenerateRequest(
                prompt=PROMPT, max_tokens=48, sampling=pb.SamplingParams(temperature=temp, seed=seed)), key=self.key)
            go = json.loads(specd("generate", "--addr", self.addr, "--api-key-file", keyfile, "-p", PROMPT, "-n", "48",
                                  "--temp", str(temp), "--seed", str(seed), "--json"))
            self.assertEqual(ids, go["output_ids"], f"temp {temp} seed {seed}")
            self.assertEqual(text, go["text"], f"temp {temp} seed {seed}")
            self.assertEqual(pb.FinishReason.Name(final.finish_reason), "FINISH_REASON_LENGTH")

    def test_presence(self):
        sp = pb.SamplingParams(temperature=1)
        self.assertFalse(sp.HasField("top_p"))  # unset: 1, off
        sp.top_p = 0
        self.assertTrue(sp.HasField("top_p"))  # set to 0: refused
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.Complete(pb.GenerateRequest(prompt=PROMPT, sampling=sp), metadata=sc.key_metadata(self.key))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(sc.status_details(cm.exception)["google.rpc.BadRequest"].field_violations[0].field, "sampling.top_p")

    def test_cancel_frees_the_stream(self):
        tokens = []

        def stop_after_five(call, chunk):
            tokens.extend(chunk.token_ids)
            if len(tokens) >= 5:
                call.cancel()

        with self.assertRaises(grpc.RpcError) as cm:
            sc.generate(self.stub, pb.GenerateRequest(prompt=PROMPT, max_tokens=0, ignore_eos=True), key=self.one,
                        on_chunk=stop_after_five)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.CANCELLED)
        start = time.time()
        while True:  # the key allows one stream: the next is admitted once the router saw the cancel
            try:
                self.stub.Complete(pb.GenerateRequest(prompt=PROMPT, max_tokens=1), metadata=sc.key_metadata(self.one))
                break
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
                self.assertLess(time.time() - start, 2, "the cancelled stream still holds the key")
                time.sleep(0.02)

    def test_deadline(self):
        with self.assertRaises(grpc.RpcError) as cm:
            sc.generate(self.stub, pb.GenerateRequest(prompt=PROMPT, max_tokens=0, ignore_eos=True), key=self.key,
                        timeout=0.03)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_retry_info(self):
        held = self.stub.Generate(pb.GenerateRequest(prompt=PROMPT, max_tokens=0, ignore_eos=True),
                                  metadata=sc.key_metadata(self.one))
        try:
            next(held)  # the key's one stream is running
            with self.assertRaises(grpc.RpcError) as cm:
                self.stub.Complete(pb.GenerateRequest(prompt=PROMPT, max_tokens=1), metadata=sc.key_metadata(self.one))
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertEqual(sc.retry_delay(cm.exception), 1.0)
        finally:
            held.cancel()

    def test_tokenize(self):
        tok = self.stub.Tokenize(pb.TokenizeRequest(text="Hello world", add_bos=True), metadata=sc.key_metadata(self.key))
        detok = self.stub.Detokenize(pb.DetokenizeRequest(token_ids=tok.token_ids, skip_special_tokens=True),
                                     metadata=sc.key_metadata(self.key))
        self.assertEqual(detok.text, "Hello world")


if __name__ == "__main__":
    unittest.main()
