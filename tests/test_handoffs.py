"""Hand-offs to a person: stored once per question, delivered to the desk's webhook with
retries, listed and closed with `switchboard handoffs`, and never a leaked webhook token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from bot import cli
from bot.compose import App, build_app
from bot.handoff_answers import AnswerCourier
from bot.handoff_desk import HandoffDesk, retry_pause
from bot.http import build_http_app
from bot.migrate import upgrade_async
from bot.runner import http_routes
from bot.settings import Settings
from handlers.qa import ALREADY_HANDED_OFF, HANDED_OFF, NOT_YOURS
from handlers.types import Incoming, Reply
from services.container import GenerationConfig, Services
from storage import handoffs
from storage.db import unit_of_work
from storage.models import Handoff, Message, utcnow
from tests.fakes.desk import FakeDesk
from tests.fakes.responder import CollectingResponder
from tests.fakes.text import FakeTextGenerator
from tests.platforms.telegram_harness import serve


@pytest.fixture
async def desk() -> AsyncIterator[FakeDesk]:
    server = FakeDesk()
    await server.start()
    yield server
    await server.stop()


async def press(app: App, data: str, *, event: str, chat: str = "c1") -> list[str]:
    responder = CollectingResponder()
    incoming = Incoming("test", event, chat, "u1", "", action=data, user_name="Ann")
    await app.dispatcher.dispatch(incoming, responder)
    return responder.texts


async def ask(app: App, text: str, *, event: str, chat: str = "c1") -> None:
    incoming = Incoming("test", event, chat, "u1", text, user_name="Ann")
    await app.dispatcher.dispatch(incoming, CollectingResponder())


async def deliver(app: App, url: str) -> int:
    async with aiohttp.ClientSession() as http:
        return await HandoffDesk(app.sessions, url).deliver_due(http)


async def test_a_press_stores_the_question_once_with_its_conversation(app: App) -> None:
    await ask(app, "hello there", event="e1")
    await ask(app, "Do you sell used cars?", event="e2")
    assert await press(app, "handoff:e2", event="b1") == [HANDED_OFF]
    assert await press(app, "handoff:e2", event="b2") == [ALREADY_HANDED_OFF]
    async with unit_of_work(app.sessions) as session:
        [handoff] = await handoffs.list_handoffs(session)
    assert handoff.question == "Do you sell used cars?"
    assert (handoff.platform, handoff.chat_id, handoff.user_id) == ("test", "c1", "u1")
    assert handoff.user_name == "Ann"
    assert [t["text"] for t in handoff.transcript if t["role"] == "user"] == [
        "hello there",
        "Do you sell used cars?",
    ]


async def test_a_group_handoff_keeps_only_the_askers_side_of_the_chat(app: App) -> None:
    def said(user: str, text: str, event: str) -> Incoming:
        return Incoming("test", event, "group", user, text, user_name=user, is_private=False)

    await app.dispatcher.dispatch(said("ann", "My order 77 is late.", "e1"), CollectingResponder())
    await app.dispatcher.dispatch(said("bob", "My PIN is 1234.", "e2"), CollectingResponder())
    await app.dispatcher.dispatch(said("ann", "Where is it now?", "e3"), CollectingResponder())
    button = Incoming("test", "b1", "group", "ann", "", action="handoff:e3", is_private=False)
    await app.dispatcher.dispatch(button, CollectingResponder())
    async with unit_of_work(app.sessions) as session:
        [handoff] = await handoffs.list_handoffs(session)
    shown = [turn["text"] for turn in handoff.transcript]
    assert "My order 77 is late." in shown and "Where is it now?" in shown
    assert "My PIN is 1234." not in shown
    assert any(turn["role"] == "assistant" for turn in handoff.transcript)


async def test_only_the_asker_can_pass_a_question_on_and_forged_buttons_store_nothing(
    app: App,
) -> None:
    def said(user: str, text: str, event: str, action: str | None = None) -> Incoming:
        return Incoming(
            "test", event, "group", user, text, user_name=user, is_private=False, action=action
        )

    async def press_as(user: str, data: str, event: str) -> list[str]:
        responder = CollectingResponder()
        await app.dispatcher.dispatch(said(user, "", event, f"handoff:{data}"), responder)
        return responder.texts

    await app.dispatcher.dispatch(
        said("ann", "My card is 4111 1111.", "e17"), CollectingResponder()
    )
    assert await press_as("bob", "e17", "b1") == [NOT_YOURS]  # another member's question
    assert await press_as("ann", "e1", "b2") == [NOT_YOURS]  # a forged prefix of e17
    assert await press_as("ann", "zzz", "b3") == [NOT_YOURS]  # no such message
    async with unit_of_work(app.sessions) as session:
        assert await handoffs.list_handoffs(session) == []
    assert await press_as("ann", "e17", "b4") == [HANDED_OFF]


async def test_the_desk_gets_each_handoff_once_after_its_outage(
    app: App, desk: FakeDesk, caplog: pytest.LogCaptureFixture
) -> None:
    await ask(app, "Can I pay with gold bars?", event="e1")
    await press(app, "handoff:e1", event="b1")
    desk.failures = [503]
    caplog.set_level(logging.INFO)
    assert await deliver(app, desk.url) == 0
    # Not due again before its pause is over.
    assert await deliver(app, desk.url) == 0 and desk.attempts == 1
    async with unit_of_work(app.sessions) as session:
        [failing] = await handoffs.list_handoffs(session)
        assert (failing.attempts, failing.error, failing.delivered_at) == (1, "HTTP 503", None)
        await session.execute(update(Handoff).values(next_attempt_at=utcnow()))
    assert await deliver(app, desk.url) == 1
    assert await deliver(app, desk.url) == 0
    [body] = desk.received
    assert "Can I pay with gold bars?" in body["text"] and "Ann" in body["text"]
    assert body["handoff"]["question"] == "Can I pay with gold bars?"
    assert body["handoff"]["chat_id"] == "c1"
    assert "s3cr3t-desk-token" not in caplog.text


async def test_a_question_cannot_ping_or_phish_the_desks_channel(app: App, desk: FakeDesk) -> None:
    await ask(app, "<!channel> pay at <https://evil.example|your invoice>", event="e1")
    await press(app, "handoff:e1", event="b1")
    assert await deliver(app, desk.url) == 1
    [body] = desk.received
    assert "<" not in body["text"] and "&lt;!channel&gt;" in body["text"]
    assert body["handoff"]["question"].startswith("<!channel>")  # the record stays as written


async def test_a_closed_handoff_is_not_sent_to_the_desk(app: App, desk: FakeDesk) -> None:
    await ask(app, "Where is my parcel?", event="e1")
    await press(app, "handoff:e1", event="b1")
    async with unit_of_work(app.sessions) as session:
        assert await handoffs.close_handoff(session, handoff_id=1)
    assert await deliver(app, desk.url) == 0 and desk.received == []


async def test_an_unreachable_desk_is_retried_later(app: App, desk: FakeDesk) -> None:
    await ask(app, "Where is my parcel?", event="e1")
    await press(app, "handoff:e1", event="b1")
    await desk.stop()
    assert await deliver(app, desk.url) == 0
    async with unit_of_work(app.sessions) as session:
        [failing] = await handoffs.list_handoffs(session)
    assert failing.attempts == 1 and failing.error and "127.0.0.1" not in failing.error
    assert retry_pause(1).total_seconds() < retry_pause(5).total_seconds() <= 3600


class FlakyChat:
    """A platform's `responder_for`: the first ``failures`` sends raise, the rest are kept."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[Incoming, str]] = []

    def __call__(self, incoming: Incoming) -> CollectingResponder:
        chat = self

        class Responder(CollectingResponder):
            async def send(self, reply: Reply) -> None:
                if chat.failures:
                    chat.failures -= 1
                    raise ConnectionResetError("platform unreachable")
                chat.sent.append((incoming, reply.text or ""))

        return Responder()


async def test_an_answer_reaches_the_chat_once_and_the_bot_remembers_it(app: App) -> None:
    await ask(app, "Can I return a worn jacket?", event="e1")
    await press(app, "handoff:e1", event="b1")
    async with unit_of_work(app.sessions) as session:
        [handoff] = await handoffs.list_handoffs(session)
        assert await handoffs.answer_handoff(
            session, handoff_id=handoff.id, text="Yes, within 30 days.", by=None
        )
        assert not await handoffs.answer_handoff(
            session, handoff_id=handoff.id, text="Again", by=None
        )
    chat = FlakyChat(failures=1)
    courier = AnswerCourier(app.sessions, {"test": chat, "slack": FlakyChat()})
    assert await courier.deliver_due() == 0  # the platform is down: kept for later
    assert await courier.deliver_due() == 0  # not due again before its pause is over
    async with unit_of_work(app.sessions) as session:
        failing = await handoffs.get_handoff(session, handoff_id=handoff.id)
        assert failing is not None and failing.answer_error == "ConnectionResetError"
        assert failing.answer_attempts == 1 and failing.answer_sent_at is None
        await session.execute(update(Handoff).values(answer_due_at=utcnow()))
    assert await courier.deliver_due() == 1
    assert await courier.deliver_due() == 0
    [(where, text)] = chat.sent
    assert (where.platform, where.chat_id, where.user_id) == ("test", "c1", "u1")
    assert text == "🙋 Support team about “Can I return a worn jacket?”:\n\nYes, within 30 days."
    async with unit_of_work(app.sessions) as session:
        answered = await handoffs.get_handoff(session, handoff_id=handoff.id)
        turns = (await session.scalars(select(Message).order_by(Message.id))).all()
    assert answered is not None and answered.closed_at is not None
    assert answered.answer_sent_at is not None
    # The answer is the conversation's latest assistant turn: a follow-up question sees it.
    assert [(t.role, t.text) for t in turns][-1] == ("assistant", text)


async def test_an_answer_waits_for_a_replica_running_its_platform(app: App) -> None:
    await ask(app, "Is the shop open on Sunday?", event="e1")
    await press(app, "handoff:e1", event="b1")
    async with unit_of_work(app.sessions) as session:
        [handoff] = await handoffs.list_handoffs(session)
        await handoffs.answer_handoff(session, handoff_id=handoff.id, text="No.", by="Maria")
    slack_only = FlakyChat()
    assert await AnswerCourier(app.sessions, {"slack": slack_only}).deliver_due() == 0
    chat = FlakyChat()
    assert await AnswerCourier(app.sessions, {"test": chat}).deliver_due() == 1
    assert not slack_only.sent and chat.sent[0][1].startswith("🙋 Maria from the support team")


def test_cli_lists_shows_and_closes_handoffs(
    migrated: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def request() -> None:
        generation = GenerationConfig(system_prompt="test", max_tokens=64, temperature=0)
        app = build_app(migrated, services=Services(FakeTextGenerator(), generation))
        await ask(app, "Is there a student discount?", event="e1")
        await press(app, "handoff:e1", event="b1")
        await app.close()

    asyncio.run(request())
    monkeypatch.setenv("DATA_DIR", str(migrated.data_dir))
    assert cli.main(["handoffs", "list"]) == 0
    listed = capsys.readouterr().out
    assert "#1" in listed and "Is there a student discount?" in listed and "test:c1" in listed
    assert cli.main(["handoffs", "show", "1"]) == 0
    assert "user: Is there a student discount?" in capsys.readouterr().out
    assert cli.main(["handoffs", "close", "1"]) == 0
    assert cli.main(["handoffs", "list"]) == 0
    assert capsys.readouterr().out.strip().endswith("no hand-offs")
    assert cli.main(["handoffs", "list", "--all"]) == 0
    assert "closed" in capsys.readouterr().out
    assert cli.main(["handoffs", "show", "9"]) == 1


@pytest.mark.parametrize("action", ["show", "close", "answer"])
@pytest.mark.parametrize("handoff_id", ["0", "-1", str(2**31), "99999999999999999999", "one"])
def test_cli_refuses_an_id_no_handoff_can_have(
    action: str, handoff_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["handoffs", action, handoff_id, "Yes."][: 4 if action == "answer" else 3])
    assert exit_info.value.code == 2
    assert "argument ID: " in capsys.readouterr().err


def test_cli_answers_a_handoff_from_a_chat_the_bot_can_reach(
    migrated: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def request() -> None:
        generation = GenerationConfig(system_prompt="test", max_tokens=64, temperature=0)
        app = build_app(migrated, services=Services(FakeTextGenerator(), generation))
        for platform, chat in (("console", "local"), ("telegram", "42")):
            asked = Incoming(platform, f"{platform}-q", chat, "42", "Any discounts?")
            await app.dispatcher.dispatch(asked, CollectingResponder())
            pressed = Incoming(
                platform, f"{platform}-b", chat, "42", "", action=f"handoff:{platform}-q"
            )
            await app.dispatcher.dispatch(pressed, CollectingResponder())
        await app.close()

    asyncio.run(request())
    monkeypatch.setenv("DATA_DIR", str(migrated.data_dir))
    assert cli.main(["handoffs", "answer", "1", "No", "discounts."]) == 1
    assert "console" in capsys.readouterr().out
    assert cli.main(["handoffs", "answer", "2", "10% off", "on Fridays.", "--by", "Maria"]) == 0
    assert "telegram chat 42" in capsys.readouterr().out
    assert cli.main(["handoffs", "answer", "2", "Again"]) == 1
    assert "has an answer already" in capsys.readouterr().out
    assert cli.main(["handoffs", "show", "2"]) == 0
    shown = capsys.readouterr().out
    assert "answer queued" in shown and "answer (Maria): 10% off on Fridays." in shown
    assert cli.main(["handoffs", "list"]) == 0
    assert "answer queued" in capsys.readouterr().out  # listed until it reaches the chat
    # Closing stops an answer still on its way (one that keeps failing, say).
    assert cli.main(["handoffs", "close", "2"]) == 0
    assert cli.main(["handoffs", "close", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "closed hand-off #2",
        "hand-off #2 was closed already",
    ]
    assert cli.main(["handoffs", "show", "2"]) == 0
    assert "answer not sent (closed)" in capsys.readouterr().out


async def test_a_help_desk_answers_over_http_with_its_token(
    app: App, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    for platform, chat in (("telegram", "42"), ("console", "local")):
        await app.dispatcher.dispatch(
            Incoming(platform, f"{platform}-q", chat, "42", "Any discounts?"), CollectingResponder()
        )
        pressed = Incoming(
            platform, f"{platform}-b", chat, "42", "", action=f"handoff:{platform}-q"
        )
        await app.dispatcher.dispatch(pressed, CollectingResponder())
    caplog.set_level(logging.INFO)
    token = "desk-s3cret-token"
    assert http_routes(settings, app, []) == []  # no token, no endpoint
    with_token = settings.model_copy(update={"handoff_answer_token": SecretStr(token)})
    server, task, base = await serve(build_http_app(http_routes(with_token, app, [])))
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession() as http:

            async def post(path: str, body: object, headers: dict[str, str]) -> int:
                async with http.post(base + path, json=body, headers=headers) as response:
                    return response.status

            answer = {"text": "10% off on Fridays.", "by": "Maria"}
            assert await post("/handoffs/1/answer", answer, {}) == 401
            assert await post("/handoffs/1/answer", answer, {"Authorization": "Bearer no"}) == 401
            assert await post("/handoffs/1/answer", {"answer": "x"}, auth) == 400
            assert await post("/handoffs/1/answer", {"text": " "}, auth) == 400
            assert await post("/handoffs/9/answer", answer, auth) == 404
            assert await post("/handoffs/2/answer", answer, auth) == 422  # a console session
            assert await post("/handoffs/1/answer", answer, auth) == 202
            assert await post("/handoffs/1/answer", answer, auth) == 409
    finally:
        server.should_exit = True
        await task
    async with unit_of_work(app.sessions) as session:
        answered = await handoffs.get_handoff(session, handoff_id=1)
    assert answered is not None
    assert (answered.answer, answered.answered_by) == ("10% off on Fridays.", "Maria")
    assert token not in caplog.text


async def test_two_replicas_send_each_handoff_and_answer_once(
    database_url: str, settings: Settings, desk: FakeDesk
) -> None:
    """Both stores: on PostgreSQL a replica skips the hand-offs (and answers) another one is
    sending."""
    await upgrade_async(database_url)
    generation = GenerationConfig(system_prompt="test", max_tokens=64, temperature=0)
    stored = settings.model_copy(update={"database_url": database_url})
    app = build_app(stored, services=Services(FakeTextGenerator(), generation))
    try:
        for n in range(5):
            await ask(app, f"question {n}?", event=f"e{n}", chat=f"c{n}")
            await press(app, f"handoff:e{n}", event=f"b{n}", chat=f"c{n}")
        async with aiohttp.ClientSession() as http:
            replicas = [HandoffDesk(app.sessions, desk.url) for _ in range(2)]
            taken = await asyncio.gather(*(r.deliver_due(http) for r in replicas))
        assert sum(taken) == 5
        assert sorted(b["handoff"]["question"] for b in desk.received) == [
            f"question {n}?" for n in range(5)
        ]
        async with unit_of_work(app.sessions) as session:
            for handoff in await handoffs.list_handoffs(session):
                await handoffs.answer_handoff(session, handoff_id=handoff.id, text="ok", by=None)
        chat = FlakyChat()
        couriers = [AnswerCourier(app.sessions, {"test": chat}) for _ in range(2)]
        assert sum(await asyncio.gather(*(c.deliver_due() for c in couriers))) == 5
        assert sorted(where.chat_id for where, _ in chat.sent) == [f"c{n}" for n in range(5)]
    finally:
        await app.close()
