// The lobby: a name, then "Find opponent" (a human, or a house bot after a few seconds)
// or "Play a bot now".
const text = require('../../utils/text.js');

Page({
  data: {
    name: '',
    playerName: '',
    playerRating: '',
    connection: 'closed',
    connectionText: '',
    online: 0,
  },

  onLoad() {
    const client = getApp().globalData.client;
    this.client = client;
    this.setData({ name: client.profile.name || '' });
    this.showConnection(client.state);
    if (client.player) this.setData({ playerName: client.player.name });
    this.unsubscribe = [
      client.on('state', (state) => this.showConnection(state)),
      client.on('hi', (hi) => {
        this.setData({ playerName: hi.name, online: hi.online });
        this.showRating();
      }),
    ];
    this.showRating();
  },

  onShow() {
    this.opening = false;
    this.showRating(); // a match played meanwhile moved it
  },

  showRating() {
    const player = this.client && this.client.player;
    const rating = player && typeof player.rating === 'number' ? String(player.rating) : '';
    if (rating !== this.data.playerRating) this.setData({ playerRating: rating });
  },

  onLeaderboard() {
    wx.navigateTo({ url: '/pages/board/board' });
  },

  onUnload() {
    (this.unsubscribe || []).forEach((off) => off());
    this.unsubscribe = [];
  },

  showConnection(state) {
    this.setData({ connection: state, connectionText: text.connection(state) });
  },

  onNameInput(e) {
    this.setData({ name: e.detail.value });
  },

  onFindOpponent() {
    this.play('auto');
  },

  onPlayBot() {
    this.play('now');
  },

  play(bot) {
    if (this.opening) return; // a second tap before the game page is up
    this.opening = true;
    // A new name goes out in the next hello (the client reconnects with its token).
    this.client.setProfile({ name: this.data.name });
    this.client.connect();
    wx.navigateTo({ url: '/pages/game/game?bot=' + bot });
  },
});
