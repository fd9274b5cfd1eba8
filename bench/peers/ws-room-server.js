#!/usr/bin/env node
// A minimal room-broadcast server on the npm `ws@8` package: the peer that
// villagehub's fan-out is measured against (bench/README.md).
//
// A client joins room NAME by opening ws://HOST:PORT/room/NAME. Every text
// message a client sends is relayed, unchanged, to every client of the room,
// the sender included — the same deliveries villagehub makes when a member
// posts to a group all its members subscribe to. No auth, no storage, no
// parsing: this is the cost of the relay alone, the floor a Node.js chat
// server starts from.
//
// Usage: node ws-room-server.js [--host 127.0.0.1] [--port 0]
// Prints one line "ws-room-server listening on ws://HOST:PORT" once bound.
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const host = arg('--host', '127.0.0.1');
const port = Number(arg('--port', '0'));

/** room name → Set of sockets in it; a room is removed when it empties. */
const rooms = new Map();

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
// perMessageDeflate off (the default in ws@8) and a 64 KiB frame cap, like
// villagehub's --max-frame.
const wss = new WebSocketServer({ server, maxPayload: 65536, clientTracking: false });

wss.on('connection', (ws, req) => {
  const m = /^\/room\/([^/?]+)/.exec(req.url || '');
  if (!m) {
    ws.close(1008, 'use /room/NAME');
    return;
  }
  const name = m[1];
  let room = rooms.get(name);
  if (!room) {
    room = new Set();
    rooms.set(name, room);
  }
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const peer of room) {
      if (peer.readyState === 1) peer.send(data, { binary: isBinary });
    }
  });
  const leave = () => {
    room.delete(ws);
    if (room.size === 0 && rooms.get(name) === room) rooms.delete(name);
  };
  ws.on('close', leave);
  ws.on('error', leave);
});

server.listen(port, host, () => {
  const a = server.address();
  console.log(`ws-room-server listening on ws://${a.address}:${a.port}`);
});

const stop = () => {
  wss.close();
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
