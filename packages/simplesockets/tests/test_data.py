"""Data classes: ReceivedData, Socket_Response, Event, Better_Exception, the exception store
and the callable ``killed`` flag."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import pickle

import pytest

from simplesockets import (
    Better_Exception,
    Event,
    ReceivedData,
    Socket_Response,
    TCPClient,
    TCPServer,
)
from simplesockets._base import CallableBool
from simplesockets._events import ExceptionStore


def test_received_data_is_bytes_with_attributes() -> None:
    t = datetime.datetime(2021, 10, 1, 12, 0, 0)
    data = ReceivedData(b"abc", t, None)
    assert data == b"abc" and isinstance(data, bytes) and data.decode() == "abc"
    assert type(data.response) is bytes and data.response == b"abc"
    assert data.time_ is t and data.from_ is None
    assert data.equals(b"abc") and data.equals((b"a", b"bc")) and not data.equals(b"x")
    with pytest.raises(TypeError):
        data.equals(5)
    with pytest.raises(AttributeError):
        data.time_ = t  # type: ignore[misc]
    clone = pickle.loads(pickle.dumps(data))
    assert clone == b"abc" and clone.time_ == t


def test_socket_response_tuple_and_attributes() -> None:
    t = datetime.datetime(2021, 10, 1, 12, 0, 0)
    item = Socket_Response(b"hello", t)
    assert len(item) == 3 and item[0] is None and item[1] is None and item[2] == b"hello"
    _sock, _address, data = item
    assert data.response == item.response == b"hello" and item.time_ == t
    assert item.from_ is None
    assert item.equals(b"hello") and item.equals((b"hel", b"lo"))
    assert item.equals(Socket_Response(b"hello"))
    with pytest.raises(TypeError):
        item.equals(1.5)
    assert Socket_Response((b"a", b"b")).response == b"ab"
    assert Socket_Response("é").response == "é".encode()
    assert repr(item) == f"Socket_Response(response=b'hello', time={t}, from_=None)"
    assert str(item) == repr(item)
    assert hash(item) == hash(Socket_Response(b"hello", t))
    assert item == Socket_Response(b"hello", t)
    assert pickle.loads(pickle.dumps(item)) == item
    assert copy.copy(item) == item
    with pytest.raises(TypeError):
        Socket_Response(42)


def test_event() -> None:
    ev = Event("--X--")
    assert dataclasses.is_dataclass(ev) and isinstance(ev.time_, datetime.datetime)
    later = ev.copy()
    same = ev.copy(new_time=False)
    assert later == ev and same.time_ == ev.time_ and later.time_ >= ev.time_
    assert Event("--X--") != Event("--Y--")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.name = "other"  # type: ignore[misc]
    assert Event("--RECEIVED--") == TCPServer.EVENT_RECEIVED
    assert Event("--EXCEPTION--") == TCPServer.EVENT_EXCEPTION
    assert Event("--TIMEOUT--") == TCPServer.EVENT_TIMEOUT
    assert Event("--DISCONNECT--") == TCPClient.EVENT_DISCONNECT
    assert Event("--CONNECTED--") == TCPClient.EVENT_CONNECTED
    assert not hasattr(TCPServer, "EVENT_CONNECTED")


def test_better_exception_and_store() -> None:
    try:
        raise KeyError("k")
    except KeyError as exc:
        caught = exc
    be = Better_Exception(caught)
    assert be.exception is caught and "raise KeyError" in be.traceback
    assert str(be).startswith("KeyError: 'k'\nTraceback:\n")
    assert be == Better_Exception(caught, be.traceback)
    store = ExceptionStore()
    assert not store and len(store) == 0
    k1 = store.add(caught)
    k2 = store.add(ValueError("v"))
    k3 = store.add(be)
    assert store and len(store) == 3
    datetime.datetime.strptime(k1.split("#")[0], "%H:%M:%S|%d.%m.%Y")
    if k2.startswith(k1):  # same second: suffixed, not overwritten
        assert k2 == k1 + "#2"
    assert list(store) == [k1, k2, k3] and store[k3] is be
    assert store.exceptions == dict(store.items())
    store.clear()
    assert not store


def test_callable_bool() -> None:
    yes, no = CallableBool(True), CallableBool(False)
    assert yes and not no and yes() is True and no() is False
    assert yes == True and no == False and yes != False  # noqa: E712
    assert repr(yes) == "True" and hash(yes) == hash(True)
