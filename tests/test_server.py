"""The HTTP API: every endpoint, every refused request (in process, and on a real socket for what
only the HTTP layer sees: chunked bodies, oversized headers), batching of concurrent requests,
the bounded queue, the serve command's refusals at start, and a clean shutdown on SIGTERM with a
request in flight."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import torch
from fastapi.testclient import TestClient
from server_process import request_json

from seq2seq.cli import serve as serve_command
from seq2seq.config import MultiHeadAttentionConfig
from seq2seq.inference.forced import forced_attention
from seq2seq.inference.translator import Translator
from seq2seq.serving.app import ServedModel, create_app, model_ids
from seq2seq.serving.http_server import MAX_HEADER_BYTES, bind, http_server
from seq2seq.serving.request_batcher import Batcher, Unavailable
from seq2seq.serving.settings import Batching, Limits

LINES = ["Eine Frau singt.", "", "Ein Mann läuft vor dem Haus.", "Zwei Hunde spielen."]


@pytest.fixture(scope="module")
def translator(trained_checkpoint) -> Translator:
    torch.set_num_threads(1)
    return Translator.from_checkpoint(trained_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def client(translator, untrained_translator):
    multihead = untrained_translator(MultiHeadAttentionConfig(num_heads=2))
    models = [ServedModel.load("tiny", translator), ServedModel.load("heads", multihead)]
    with TestClient(create_app(models, Limits(max_lines=8, max_chars=200, max_beam=6))) as c:
        yield c


@pytest.fixture(scope="module")
def listening(translator) -> Iterator[tuple[str, int]]:
    """(host, port) of the app served by uvicorn as the serve command runs it (its socket and
    HTTP protocol), in a thread: what a client's bytes on the wire meet."""
    (sock,) = bind("127.0.0.1", 0)
    sock.listen()  # a client connecting before uvicorn accepts waits in the backlog
    server = http_server(create_app([ServedModel("tiny", translator)]))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    yield sock.getsockname()
    server.should_exit = True
    thread.join()


def test_health_and_models_describe_what_is_served(client, translator):
    assert client.get("/health").json()["status"] == "ok"
    listing = client.get("/models").json()
    assert listing["default"] == "tiny"
    assert listing["limits"] == {"max_lines": 8, "max_chars": 200, "max_beam": 6}
    tiny, heads = listing["models"]
    assert (tiny["id"], tiny["src_lang"], tiny["tgt_lang"]) == ("tiny", "de", "en")
    assert tiny["parameters"] == sum(p.numel() for p in translator.model.parameters())
    assert isinstance(tiny["val_bleu"], float) and isinstance(tiny["test_bleu"], float)
    assert (heads["scorer"], heads["heads"], heads["val_bleu"]) == ("multihead", 2, None)


def test_the_page_is_served_at_the_root(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert 'id="heatmap"' in response.text and 'id="translate"' in response.text


def test_n_lines_in_give_n_translations_out_in_order(client, translator):
    response = client.post("/translate", json={"text": LINES})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "tiny"
    assert [t["source"] for t in body["translations"]] == LINES
    assert [t["text"] for t in body["translations"]] == translator.translate(LINES)
    assert body["translations"][1] == {"source": "", "text": "", "hypotheses": []}


def test_nbest_hypotheses_come_best_first_with_scores(client):
    response = client.post("/translate", json={"text": LINES[:1], "beam": 4, "nbest": 3})
    hypotheses = response.json()["translations"][0]["hypotheses"]
    assert len(hypotheses) == 3
    scores = [h["score"] for h in hypotheses]
    assert scores == sorted(scores, reverse=True)
    assert response.json()["translations"][0]["text"] == hypotheses[0]["text"]


@pytest.mark.parametrize("model,heads", [("tiny", 1), ("heads", 2)])
def test_attention_comes_per_head_one_row_per_target_subword(client, model, heads):
    response = client.post("/translate", json={"text": LINES, "model": model, "beam": 2,
                                               "nbest": 2, "attention": True})
    for line in response.json()["translations"]:
        if not line["source"]:
            assert line["src_pieces"] == [] and line["hypotheses"] == []
            continue
        assert line["src_pieces"][-1] == "</s>"
        for hyp in line["hypotheses"]:
            weights = torch.tensor(hyp["attention"])
            assert weights.shape == (heads, len(hyp["tgt_pieces"]), len(line["src_pieces"]))
            assert hyp["tgt_pieces"][-1] == "</s>"
            assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:2]), atol=1e-3)


def test_alignments_come_per_line_and_per_hypothesis(client, translator):
    answer = client.post("/translate", json={"text": LINES, "beam": 3, "nbest": 2,
                                             "alignments": True}).json()
    expected = [found.alignment() for found in translator.search(LINES, translator.settings(
        3, nbest=2, attention=True))]
    got = answer["translations"]
    assert [[tuple(link) for link in line["alignment"]] for line in got] == expected
    assert all(line["alignment"] == line["hypotheses"][0]["alignment"]
               for line in got if line["hypotheses"])
    assert got[1]["alignment"] == [] and "attention" not in got[0]["hypotheses"][0]


def test_attention_of_a_given_translation_is_the_forced_attention_with_links_and_stats(
        client, translator):
    targets = ["A woman is singing .", "", "A man runs in front of the house .", "Two dogs"]
    answer = client.post("/attention", json={"text": LINES, "target": targets})
    assert answer.status_code == 200 and answer.json()["model"] == "tiny"
    pairs = answer.json()["pairs"]
    assert [pair["source"] for pair in pairs] == LINES  # N lines in, N out, in order
    assert [pair["target"] for pair in pairs] == targets
    assert pairs[1]["attention"] == [] and pairs[1]["statistics"] is None  # an empty line
    tokenizer = translator.tokenizer
    kept = [0, 2, 3]
    src_ids = tokenizer.encode_src([LINES[i] for i in kept])
    tgt_ids = tokenizer.encode_tgt([targets[i] for i in kept])
    for k, weights in forced_attention(translator, src_ids, tgt_ids):
        pair = pairs[kept[k]]
        assert pair["src_pieces"] == tokenizer.src_pieces(src_ids[k]) + ["</s>"]
        assert pair["tgt_pieces"] == tokenizer.tgt_pieces(tgt_ids[k]) + ["</s>"]
        torch.testing.assert_close(torch.tensor(pair["attention"]), weights,
                                   atol=1e-4, rtol=0)
        # every target word gets its one strongest source word
        assert sorted(j for _, j in pair["alignment"]) == \
            list(range(len(targets[kept[k]].split())))
        assert set(pair["statistics"]) == {"entropy", "coverage", "diagonal"}


def test_two_models_read_one_translation_on_the_same_axes(client):
    body = {"text": LINES[:1], "target": ["A woman is singing ."]}
    tiny, heads = (client.post("/attention", json={**body, "model": model}).json()["pairs"][0]
                   for model in ("tiny", "heads"))
    assert (tiny["src_pieces"], tiny["tgt_pieces"]) == (heads["src_pieces"], heads["tgt_pieces"])
    T, S = len(tiny["tgt_pieces"]), len(tiny["src_pieces"])
    assert torch.tensor(tiny["attention"]).shape == (1, T, S)
    assert torch.tensor(heads["attention"]).shape == (2, T, S)


@pytest.mark.parametrize("body,status,field", [
    ({"text": ["a"]}, 422, "target"),
    ({"text": ["a", "b"], "target": ["a"]}, 422, "target"),
    ({"text": ["a"], "target": ["a\nb"]}, 422, "target[0]"),
    ({"text": ["a"], "target": ["b" * 201]}, 413, "target[0]"),
    ({"text": ["a"], "target": ["a"], "model": "nope"}, 404, "model"),
    ({"text": ["a"], "target": ["a"], "beam": 2}, 422, "beam"),
])
def test_a_bad_attention_request_is_refused_naming_the_field(client, body, status, field):
    response = client.post("/attention", json=body)
    assert response.status_code == status
    error = response.json()
    assert error["field"] == field and error["error"].startswith(field)
    if field == "beam":
        assert error["error"].endswith("known: text, target, model")


def test_without_attention_no_subwords_are_sent(client):
    line = client.post("/translate", json={"text": LINES[:1]}).json()["translations"][0]
    assert "src_pieces" not in line and "attention" not in line["hypotheses"][0]


BAD_REQUESTS = [
    ('{"text": ["a"', 400, None),
    ('["a"]', 422, None),
    ('{}', 422, "text"),
    ('{"text": "a sentence"}', 422, "text"),
    ('{"text": ["a", 3]}', 422, "text[1]"),
    ('{"text": ["a"], "beam": "5"}', 422, "beam"),
    ('{"text": ["a"], "beam": 2.5}', 422, "beam"),
    ('{"text": ["a"], "attention": "yes"}', 422, "attention"),
    ('{"text": ["a"], "colour": 1}', 422, "colour"),
    ('{"text": ["a"], "beam": 0}', 422, "beam"),
    ('{"text": ["a"], "beam": 7}', 422, "beam"),
    ('{"text": ["a"], "beam": 2, "nbest": 3}', 422, "nbest"),
    ('{"text": ["a"], "nbest": 0}', 422, "nbest"),
    ('{"text": ["a"], "model": "nope"}', 404, "model"),
    ('{"text": ["a\\nb"]}', 422, "text[0]"),
    ('{"text": ["a", "\\ud800"]}', 422, "text[1]"),
    (b'{"text": ["\xff\xfe"]}', 400, None),
    (json.dumps({"text": ["a"] * 9}), 413, "text"),
    (json.dumps({"text": ["a", "b" * 201]}), 413, "text[1]"),
    (json.dumps({"text": ["x" * 10**6]}), 413, None),
]


@pytest.mark.parametrize("body,status,field", BAD_REQUESTS)
def test_a_bad_request_is_refused_naming_the_field(client, body, status, field):
    response = client.post("/translate", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()
    assert error["field"] == field and error["error"]
    assert field is None or error["error"].startswith(field)


def test_a_chunked_body_over_the_limit_is_refused_as_one_with_a_length(client):
    # an iterator is sent with Transfer-Encoding: chunked, without Content-Length
    body = json.dumps({"text": ["x" * 10**6]}).encode()
    chunks = (body[start:start + 65536] for start in range(0, len(body), 65536))
    response = client.post("/translate", content=chunks,
                           headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"error": f"the request body is larger than "
                                        f"{Limits(8, 200, 6).max_body_bytes} bytes",
                               "field": None}


def test_a_chunked_body_over_the_limit_is_413_on_the_wire(listening):
    connection = http.client.HTTPConnection(*listening, timeout=60)
    connection.putrequest("POST", "/translate")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    body = json.dumps({"text": ["x" * 2 * 10**6]}).encode()
    for start in range(0, len(body), 65536):
        chunk = body[start:start + 65536]
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == \
        f"the request body is larger than {Limits().max_body_bytes} bytes"


@pytest.mark.parametrize("size,status", [(MAX_HEADER_BYTES - 1000, 200), (200_000, 431)])
def test_headers_up_to_the_limit_pass_and_longer_ones_get_431(listening, size, status):
    connection = http.client.HTTPConnection(*listening, timeout=60)
    connection.request("GET", "/health", headers={"X-Big": "a" * size})
    response = connection.getresponse()
    assert response.status == status
    if status == 431:
        assert json.loads(response.read()) == {
            "error": f"the request line and headers are larger than {MAX_HEADER_BYTES} bytes",
            "field": None}


def test_a_request_that_is_not_http_gets_400_in_the_apis_shape(listening):
    with socket.create_connection(listening, timeout=60) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\na header without a colon\r\n\r\n")
        client.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: client.recv(65536), b""))
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error"].startswith("not a valid HTTP/1.1 request: ")


def test_a_client_still_sending_its_headers_after_the_431_is_not_reset(listening):
    # Closing a socket with unread data resets the connection: the server must read on.
    with socket.create_connection(listening, timeout=60) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2 * MAX_HEADER_BYTES)
        answer = b""
        while b"\r\n\r\n" not in answer:
            received = client.recv(65536)
            assert received, answer  # closed before the whole head of the answer came
            answer += received
        assert answer.startswith(b"HTTP/1.1 431 ")
        for _ in range(16):  # the rest of its headers, sent after the answer came
            client.sendall(b"a" * 65536)
        client.shutdown(socket.SHUT_WR)
        while client.recv(65536):  # the rest of the answer, then the server's close
            pass


def test_the_api_docs_load_every_asset_from_the_server_itself(client):
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)|url: ?["']([^"']+)""", page.text)
    urls = [src or url for src, url in urls]
    assert "/openapi.json" in urls and len(urls) >= 4  # the script, the style, the icon
    for url in urls:
        assert url.startswith("/"), url
        assert client.get(url).status_code == 200, url


def test_zero_lines_give_zero_translations(client):
    response = client.post("/translate", json={"text": []})
    assert response.status_code == 200 and response.json()["translations"] == []


@pytest.mark.parametrize("method,path,status", [("get", "/nope", 404), ("get", "/translate", 405)])
def test_unknown_paths_and_methods_answer_in_the_same_json_shape(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status and set(response.json()) == {"error", "field"}


def test_a_body_that_is_not_declared_json_is_refused(client):
    response = client.post("/translate", content='{"text": ["a"]}',
                           headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]


def test_model_ids_are_run_dir_names_made_unique(tmp_path):
    paths = [tmp_path / "de-en" / "checkpoints" / "best.pt", tmp_path / "x" / "avg.pt",
             tmp_path / "other" / "de-en" / "checkpoints" / "best.pt"]
    assert model_ids(paths) == ["de-en", "avg", "de-en-2"]


class CountingTranslator:
    """Counts the search calls of a real translator (how many batches were decoded)."""

    def __init__(self, translator: Translator) -> None:
        self.translator, self.calls = translator, []

    def search_encoded(self, lines, src_ids, settings, batch_size):
        self.calls.append(len(lines))
        return self.translator.search_encoded(lines, src_ids, settings, batch_size)

    def __getattr__(self, name):
        return getattr(self.translator, name)


def run_batcher(batching: Batching, scenario):
    async def main():
        batcher = Batcher(batching)
        batcher.start()
        try:
            return await scenario(batcher)
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_concurrent_requests_share_one_batched_search(translator):
    counting = CountingTranslator(translator)
    settings = translator.settings(beam_size=3)
    requests = [[line] for line in LINES] + [LINES[2:]]
    tokens = sum(len(ids) + 1 for lines in requests
                 for ids in translator.tokenizer.encode_src(lines))

    async def scenario(batcher):
        # a window far longer than the test, cut short once the budget is reached
        return await asyncio.gather(*(batcher.translate(counting, lines, settings)
                                      for lines in requests))

    found = run_batcher(Batching(window_ms=600_000, max_batch_tokens=tokens), scenario)
    assert counting.calls == [len(LINES) + 2]
    assert [[t.text for t in got] for got in found] == [translator.translate(lines, settings)
                                                        for lines in requests]


def test_a_full_queue_refuses_at_once_and_close_finishes_queued_work(translator):
    settings = translator.settings(beam_size=2)

    async def scenario(batcher):
        waiting = asyncio.ensure_future(batcher.translate(translator, LINES[:2], settings))
        await asyncio.sleep(0)  # let it queue (no timing: one turn of the event loop)
        with pytest.raises(Unavailable, match="busy") as full:
            await batcher.translate(translator, LINES[2:3], settings)
        assert full.value.retry_after == 1
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="shutting down"):
            await batcher.translate(translator, LINES[:1], settings)
        await closing
        return await waiting

    found = run_batcher(Batching(window_ms=600_000, max_queued_lines=2), scenario)
    assert [t.text for t in found] == translator.translate(LINES[:2], settings)


def test_sigterm_finishes_the_request_in_flight_then_refuses_new_ones(serve,
                                                                     trained_checkpoint):
    server = serve("--checkpoint", str(trained_checkpoint), "--batch-window-ms", "2000")
    answer: dict = {}
    request = threading.Thread(target=lambda: answer.update(
        request_json(f"{server.url}/translate", {"text": LINES})))
    request.start()
    while request_json(f"{server.url}/health")["queued_lines"] == 0:  # until it is queued
        assert request.is_alive(), answer
    server.process.send_signal(signal.SIGTERM)
    request.join(timeout=60)
    assert [t["source"] for t in answer["translations"]] == LINES
    assert server.stop() == 0, server.output()
    assert "server stopped" in server.output()
    with pytest.raises(urllib.error.URLError):
        request_json(f"{server.url}/health")


def test_a_missing_checkpoint_is_one_line_before_serving(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        serve_command.main(["--checkpoint", str(tmp_path / "nope.pt"), "--port", "0"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"error: checkpoint not found: {tmp_path / 'nope.pt'}"


@pytest.mark.parametrize("option", [["--port", "70000"], ["--batch-window-ms", "nan"],
                                    ["--max-lines", "0"], ["--max-beam", "101"],
                                    ["--threads", "100000"]])
def test_bad_options_are_usage_errors(option, capsys):
    with pytest.raises(SystemExit) as stopped:
        serve_command.main(["--checkpoint", "x", *option])
    assert stopped.value.code == 2 and option[0] in capsys.readouterr().err


@pytest.mark.parametrize("host,reason", [("127.0.0.1", "Address already in use"),
                                         ("192.0.2.1", "Cannot assign requested address")])
def test_an_address_it_cannot_listen_on_is_one_line_before_loading(host, reason, capsys):
    # 192.0.2.1 (TEST-NET-1) is no address of this machine
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as stopped:
            serve_command.main(["--checkpoint", "x", "--host", host, "--port", str(port)])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: cannot listen on {host}:{port}: {reason}"]


def test_a_queue_shorter_than_a_request_is_refused_at_start(capsys):
    # a 50-line request (<= --max-lines) could never fit in the queue: 503 forever
    with pytest.raises(SystemExit) as stopped:
        serve_command.main(["--checkpoint", "x", "--max-lines", "200",
                            "--max-queued-lines", "10"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --max-queued-lines 10 is less than --max-lines 200: a request of more lines "
        "than the queue holds would get 503 forever; make --max-queued-lines at least "
        "--max-lines"]


def test_past_the_queue_bound_the_answer_is_503_with_retry_after(translator):
    app = create_app([ServedModel("tiny", translator)], batching=Batching(max_queued_lines=1))
    with TestClient(app) as client:
        response = client.post("/translate", json={"text": LINES[:2]})
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert "busy" in response.json()["error"]
        assert client.post("/translate", json={"text": LINES[:1]}).status_code == 200


def test_a_failed_search_is_a_500_json_answer_and_the_server_goes_on(translator, monkeypatch):
    app = create_app([ServedModel("tiny", translator)])
    with TestClient(app, raise_server_exceptions=False) as client:
        with monkeypatch.context() as patch:
            patch.setattr(translator, "search_encoded", lambda *args: 1 / 0)
            response = client.post("/translate", json={"text": LINES[:1]})
        assert response.status_code == 500
        assert response.json()["error"] == "internal error: ZeroDivisionError: division by zero"
        assert client.post("/translate", json={"text": LINES[:1]}).status_code == 200
