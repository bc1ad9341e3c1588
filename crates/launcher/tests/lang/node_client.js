#!/usr/bin/env node
// A hub client in Node.js (MQTT.js 5) for crates/launcher/tests/examples.rs: logs in as ID
// with the token in TOKEN_FILE, calls SERVICE's greet/hello with a good and a bad body and
// greet/bye, and prints the three replies as one JSON line. MQTT.js comes from
// examples/node/node_modules (the test sets NODE_PATH).
//
//     node_client.js URL CA_PEM ID TOKEN_FILE SERVICE
'use strict'
const crypto = require('node:crypto')
const fs = require('node:fs')
const mqtt = require('mqtt')

const [url, ca, id, tokenFile, service] = process.argv.slice(2)
const pending = new Map()

async function main () {
  const client = await mqtt.connectAsync(url, {
    protocolVersion: 5,
    clientId: `${id}:${crypto.randomBytes(4).toString('hex')}`,
    username: id,
    password: fs.readFileSync(tokenFile, 'utf8').trim(),
    ca: fs.readFileSync(ca),
    reconnectPeriod: 0,
    connectTimeout: 10000,
  })
  client.on('message', (topic, payload, packet) => {
    const key = packet.properties && packet.properties.correlationData &&
      packet.properties.correlationData.toString('hex')
    const p = pending.get(key)
    if (p && topic === `_INBOX/${id}/${service}`) p(JSON.parse(payload))
  })
  await client.subscribeAsync(`_INBOX/${id}/+`, { qos: 1 })
  const call = (method, body) => new Promise((resolve) => {
    const correlationData = crypto.randomBytes(16)
    const key = correlationData.toString('hex')
    const timer = setTimeout(() => resolve({ timeout: 5 }), 5000)
    pending.set(key, (reply) => { clearTimeout(timer); pending.delete(key); resolve(reply) })
    client.publish(`rpc/${service}/greet/${method}/${id}`, body, {
      qos: 1,
      properties: { correlationData, responseTopic: `_INBOX/${id}/${service}` },
    })
  })
  const out = {
    hello: await call('hello', JSON.stringify({ name: 'node' })),
    bad: await call('hello', '[1, 2]'),
    unknown: await call('bye', '{}'),
  }
  await client.endAsync()
  console.log(JSON.stringify(out))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
