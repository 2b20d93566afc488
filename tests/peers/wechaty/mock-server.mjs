// A real wechaty puppet-service gRPC server for GridBot's wechaty adapter tests: Node's PuppetServer with
// PuppetMock behind it, on 127.0.0.1:$PORT (no TLS, token $TOKEN), and a small JSON control API on
// 127.0.0.1:$CTRL_PORT with which a test makes members speak, @-mention the bot, send an image or a voice note,
// adds the bot to a room, redelivers a message, and reads what the bot sent (text, room, mention ids).
// The world (bot, contacts, rooms) comes from the JSON file $WORLD, so a restarted peer has the same one.
// Prints one `READY …` line on stdout when it listens.
import fs from 'node:fs'
import http from 'node:http'
import { FileBox } from 'file-box'
import { PuppetServer } from 'wechaty-puppet-service'
import { PuppetMock, mock } from 'wechaty-puppet-mock'

const PORT = Number(process.env.PORT || 8788)
const CTRL_PORT = Number(process.env.CTRL_PORT || 8789)
const TOKEN = process.env.TOKEN || 'insecure_mock_token'
const world = process.env.WORLD
  ? JSON.parse(fs.readFileSync(process.env.WORLD, 'utf8'))
  : { bot: { id: 'bot_self', name: '网格助手' }, contacts: [], rooms: [] }

const mocker = new mock.Mocker()
const bot = mocker.createContact({ id: world.bot.id, name: world.bot.name })
const addContact = ({ id, name }) => mocker.createContact({ id, name })
// Room ids must contain '@': PuppetMock routes a send to a room or a contact by that character.
const addRoom = ({ id, topic, members }) => mocker.createRoom({ id, topic, ownerId: members[0], adminIdList: [], memberIdList: [...members] })
world.contacts.forEach(addContact)
world.rooms.forEach(addRoom)

// PuppetMock's sends return no message id and drop the mention list; a real puppet returns the new message's
// id (python-wechaty needs it) and sends a real @. Both are done here, through the mock's own say().to().
class PeerPuppet extends PuppetMock {
  _sayAs (conversationId, something, mentionIds = []) {
    if (!this.isLoggedIn) throw new Error('not logged in')
    const user = this.mocker.ContactMock.load(this.currentUserId)
    const conversation = /@/.test(conversationId)
      ? this.mocker.RoomMock.load(conversationId)
      : this.mocker.ContactMock.load(conversationId)
    let id
    const grab = ({ messageId }) => { id ??= messageId } // emitted synchronously by say().to()
    this.on('message', grab)
    try {
      user.say(something, mentionIds.map(m => this.mocker.ContactMock.load(m))).to(conversation)
    } finally { this.off('message', grab) }
    return id
  }

  async messageSendText (conversationId, text, mentionIdList) { return this._sayAs(conversationId, text, mentionIdList || []) }
  async messageSendFile (conversationId, file) { return this._sayAs(conversationId, file) }
  // The mock answers every image request with a QR code; return the picture the member actually sent.
  async messageImage (messageId) { return this.messageFile(messageId) }
}
const puppet = new PeerPuppet({ mocker })
// Runs every time the client (re)starts the puppet, which it does on every connect: log the bot in again.
mocker.use(() => { if (!puppet.isLoggedIn) mocker.login(bot); return () => {} })

// Every message the bot account sends, as the peer saw it.
const sent = []
puppet.on('message', ({ messageId }) => {
  const p = mocker.messagePayload(messageId)
  if (p.talkerId !== bot.id) return
  const file = mocker.cacheFileBoxPayload.get(messageId)
  sent.push({ id: p.id, roomId: p.roomId || null, listenerId: p.listenerId || null, text: p.text || '',
    mentionIdList: p.mentionIdList || [], type: p.type, file: file ? { name: file.name } : null })
})

const server = new PuppetServer({ endpoint: `127.0.0.1:${PORT}`, puppet, token: TOKEN, tls: { disable: true } })
await server.start()

const body = req => new Promise((resolve, reject) => {
  let b = ''
  req.on('data', c => (b += c))
  req.on('end', () => { try { resolve(b ? JSON.parse(b) : {}) } catch (e) { reject(e) } })
})

function say ({ talker, room, to, text, mentions = [], file }) {
  const who = mocker.ContactMock.load(talker)
  const conversation = room ? mocker.RoomMock.load(room) : mocker.ContactMock.load(to || bot.id)
  // file: {name, base64} — the mock types it by extension (.jpg/.png image, .silk voice, .mp4 video)
  const something = file ? FileBox.fromBase64(file.base64, file.name) : text
  let id
  const grab = ({ messageId }) => { id ??= messageId }
  puppet.on('message', grab)
  try { who.say(something, mentions.map(m => mocker.ContactMock.load(m))).to(conversation) } finally { puppet.off('message', grab) }
  return id
}

const saveWorld = () => { if (process.env.WORLD) fs.writeFileSync(process.env.WORLD, JSON.stringify(world)) }

const routes = {
  'GET /state': async () => ({ loggedIn: puppet.isLoggedIn, userId: puppet.isLoggedIn ? puppet.currentUserId : null }),
  'POST /say': async req => ({ id: say(await body(req)) }),
  // The platform delivering a message it already delivered (after a reconnect, a retry): same id again.
  'POST /redeliver': async req => { const { id } = await body(req); puppet.emit('message', { messageId: id }); return { id } },
  // Contacts and rooms added here are written back to $WORLD: a restarted peer still has them.
  'POST /contact': async req => { const c = await body(req); addContact(c); world.contacts.push(c); saveWorld(); return { ok: true } },
  'POST /room': async req => { const r = await body(req); addRoom(r); world.rooms.push(r); saveWorld(); return { ok: true } },
  // {room, invitees: [ids], inviter}: the inviter adds them (the bot too) and the peer emits room-join.
  'POST /join': async req => {
    const { room, invitees, inviter } = await body(req)
    mocker.RoomMock.load(room).add(...invitees.map(i => mocker.ContactMock.load(i))).by(mocker.ContactMock.load(inviter))
    return { ok: true }
  },
  'GET /sent': async () => sent,
  'DELETE /sent': async () => { sent.length = 0; return { ok: true } },
}

const ctrl = http.createServer(async (req, res) => {
  const reply = (code, obj) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)) }
  const route = routes[`${req.method} ${req.url}`]
  if (!route) return reply(404, { error: 'not found' })
  try { reply(200, await route(req)) } catch (e) { reply(500, { error: String((e && e.stack) || e) }) }
})
await new Promise(resolve => ctrl.listen(CTRL_PORT, '127.0.0.1', resolve))
console.log(`READY grpc=127.0.0.1:${PORT} ctrl=127.0.0.1:${CTRL_PORT}`)

const shutdown = async () => {
  setTimeout(() => process.exit(0), 3000).unref() // a graceful step that hangs must not keep the test waiting
  ctrl.close()
  try { await server.stop() } catch {}
  try { await puppet.stop() } catch {}
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
