#!/usr/bin/env node
// hello-plugin: a hivehub plugin in Node.js, as a model to copy.
//
// It logs in to the hub, serves the capability `greet` (method `hello`), lets viewers and up
// call it, refreshes its token, tells the launcher it is ready, publishes the event
// `event/{id}/status/hello/{id}` every second, and stops cleanly on SIGTERM.
// Needs only MQTT.js (`npm ci`); see README.md.
'use strict'
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { execFile } = require('node:child_process')
const mqtt = require('mqtt')

for (const v of ['HIVEHUB_HOME', 'HIVEHUB_CLIENT_ID']) {
  if (!process.env[v]) {
    console.error(`${v} is not set: the launcher sets it; to run me by hand, see README.md`)
    process.exit(1)
  }
}
const id = process.env.HIVEHUB_CLIENT_ID // our login ID, also the plugin's name
const certs = path.join(process.env.HIVEHUB_HOME, 'certs')
const CAPABILITY = 'greet'
const pending = new Map() // correlation data (hex) -> our request in flight

const log = (msg) => console.error(msg) // the launcher writes it to logs/{id}.log

const client = mqtt.connect(process.env.HIVEHUB_SERVER || 'mqtts://127.0.0.1:8883', {
  protocolVersion: 5,
  clientId: `${id}:${crypto.randomBytes(4).toString('hex')}`,
  username: id,
  password: fs.readFileSync(path.join(certs, `${id}.token`), 'utf8').trim(),
  ca: fs.readFileSync(path.join(certs, 'caCert.pem')),
  clean: true,
  // Sent by the hub for us if we vanish without a clean DISCONNECT.
  will: { topic: `event/${id}/status/lost/${id}`, payload: '{"reason":"connection lost"}', qos: 1 },
})

function publish (topic, body, properties = {}) {
  client.publish(topic, JSON.stringify(body), { qos: 1, properties })
}

// Our capability: the result, or throws an error with the reply's code.
function greet (method, payload) {
  const fail = (code, message) => Object.assign(new Error(message), { code })
  if (method !== 'hello') throw fail('unknownMethod', `capability '${CAPABILITY}' has no method '${method}'`)
  let body
  try {
    body = JSON.parse(payload.toString() || '{}') // an empty body counts as {}
  } catch (e) {
    throw fail('badRequest', e.message)
  }
  const name = body && body.name
  if (typeof name !== 'string' || !name) throw fail('badRequest', 'expected {"name": "..."}')
  return { greeting: `hello ${name}` }
}

client.on('message', (topic, payload, packet) => {
  const parts = topic.split('/')
  const correlationData = packet.properties && packet.properties.correlationData
  if (parts[0] === '_INBOX') { // a reply to one of our requests: `_INBOX/{id}/{service}`
    const key = correlationData && correlationData.toString('hex')
    const p = pending.get(key)
    if (!p || parts[2] !== p.service) return // only the service we called may answer
    pending.delete(key)
    clearTimeout(p.timer)
    let reply
    try { reply = JSON.parse(payload) } catch (e) { return p.reject(new Error(`${p.what}: ${e.message}`)) }
    if (reply.error) p.reject(new Error(`${p.what}: ${reply.error.code}: ${reply.error.message}`))
    else p.resolve(reply.result)
  } else if (parts[0] === 'rpc') { // `rpc/{id}/{capability}/{method}/{sender}`
    const [, , , method, sender] = parts
    let reply
    try {
      reply = { result: greet(method, payload) }
    } catch (e) {
      reply = { error: { code: e.code || 'internal', message: e.message } }
    }
    // Always answer into the inbox of the verified sender, never a topic it names.
    publish(`_INBOX/${sender}/${id}`, reply, { correlationData })
  }
})

// Calls a capability; resolves with its result, rejects with its error or after `ms`.
function call (service, capability, method, body, ms = 5000) {
  const correlationData = crypto.randomBytes(16)
  const what = `${service}/${capability}/${method}`
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(correlationData.toString('hex'))
      reject(new Error(`${what}: no reply in ${ms} ms`))
    }, ms)
    pending.set(correlationData.toString('hex'), { service, what, resolve, reject, timer })
    publish(`rpc/${service}/${capability}/${method}/${id}`, body,
      { correlationData, responseTopic: `_INBOX/${id}/${service}` })
  })
}

// Gets a new token; it is the password of the next reconnect. Returns when to refresh next.
async function refreshToken () {
  const { token, expires } = await call('auth', 'profile', 'refresh', {})
  client.options.password = token // the token file is read-only: keep it in memory
  log(`token refreshed, expires ${new Date(expires).toISOString()}`) // unix milliseconds
  return Date.now() + (expires - Date.now()) * 3 / 4 // when a quarter is left
}

// Tells the launcher we are ready (only asked for with `waitReady: true`). Node has no Unix
// datagram sockets, so systemd-notify sends `READY=1` to $NOTIFY_SOCKET for us.
function notifyReady () {
  if (!process.env.NOTIFY_SOCKET) return Promise.resolve()
  return new Promise((resolve, reject) =>
    execFile('systemd-notify', ['--ready'], (e) => (e ? reject(e) : resolve())))
}

let started = false
let stopping = false
let timer
client.on('error', (e) => log(`mqtt: ${e.message}`))
client.on('offline', () => stopping || log('connection lost; MQTT.js reconnects'))
client.on('connect', async () => {
  log('logged in')
  // Small requests and replies: send them at once, not after the peer's delayed ACK (Nagle).
  client.stream.setNoDelay(true)
  if (started) return // after a reconnect, MQTT.js subscribes again by itself
  started = true
  try {
    await client.subscribeAsync([`_INBOX/${id}/+`, `rpc/${id}/${CAPABILITY}/+/+`], { qos: 1 })
    await call('auth', 'authz', 'setPermissions',
      { capability: CAPABILITY, roles: ['viewer', 'operator', 'manager', 'admin'] })
    let refreshAt = await refreshToken()
    await notifyReady()
    log(`ready: serving ${CAPABILITY}`)
    let count = 0
    timer = setInterval(() => {
      if (!client.connected) return
      publish(`event/${id}/status/hello/${id}`, { count: ++count, time: Date.now() })
      if (Date.now() >= refreshAt) {
        refreshAt = Date.now() + 5000 // try again in 5 s if this one fails
        refreshToken().then((at) => { refreshAt = at }, (e) => log(`token refresh failed: ${e.message}`))
      }
    }, 1000)
  } catch (e) {
    log(`start failed: ${e.message}`)
    process.exit(1)
  }
})

function shutdown (signal) {
  log(`got ${signal}`)
  stopping = true
  clearInterval(timer)
  client.end(() => process.exit(0)) // a clean MQTT DISCONNECT, then exit
}
process.once('SIGTERM', shutdown) // the launcher's stop
process.once('SIGINT', shutdown) // Ctrl-C when run by hand
