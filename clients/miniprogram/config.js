// Where the game server is. Both hosts must be listed in the mini-program's admin
// console (mp.weixin.qq.com: Development > Development Settings > Server Domain):
// socketUrl's host as a "socket legal domain", httpBase's as a "request legal domain".
// WeChat only allows wss:// and https:// on port 443 of an ICP-registered domain; see
// README.md beside this file.
module.exports = {
  // The WebSocket endpoint: wss://<your host>/applet/websocket
  socketUrl: 'wss://example.com/applet/websocket',
  // Base of the HTTP endpoints (POST /applet/login).
  httpBase: 'https://example.com',
  // Log in with wx.login + POST /applet/login (needs --wechat-appid and --wechat-secret
  // on the server). Off, or when the server has no WeChat app configured: play as a
  // guest whose token is kept in storage.
  useWeChatLogin: true,
  // {"type":"ping"} every 20 s: WeChat has no API to send WebSocket ping frames.
  heartbeatMs: 20000,
  // A ping not answered within this long: drop the socket and open a new one.
  pongTimeoutMs: 10000,
  // Reconnect backoff after an unexpected close: doubles from min up to max, +-20 %.
  reconnectMinMs: 500,
  reconnectMaxMs: 15000,
  // The server could not load the player just now (error unavailable, its storage is
  // failing): keep the token and say hello again after min, doubling up to max, +-20 %.
  busyRetryMinMs: 1000,
  busyRetryMaxMs: 10000,
};
