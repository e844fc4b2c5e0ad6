// The lobby: a nickname and an avatar picked the WeChat way (since 2022 getUserProfile
// gives a grey picture and "微信用户": <button open-type="chooseAvatar"> and
// <input type="nickname"> let the player choose both), then "Find opponent" (a human, or a
// house bot after a few seconds), "Play a bot now", or "Invite a friend" (a private room).
const config = require('../../config.js');
const text = require('../../utils/text.js');

Page({
  data: {
    s: {},
    name: '',
    avatar: '',
    avatarStatus: '',
    playerName: '',
    playerRating: '',
    playingAs: '',
    ratingText: '',
    connection: 'closed',
    connectionText: '',
    online: 0,
  },

  onLoad() {
    const client = getApp().globalData.client;
    this.client = client;
    this.setData({ s: text.table(), name: client.profile.name || '', avatar: client.profile.avatar || '' });
    wx.setNavigationBarTitle({ title: text.t('appTitle') });
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
    const playingAs = this.data.playerName
      ? text.t('playingAs', { name: this.data.playerName, online: this.data.online })
      : '';
    if (rating !== this.data.playerRating || playingAs !== this.data.playingAs) {
      this.setData({
        playerRating: rating,
        ratingText: rating ? text.t('rating', { rating }) : '',
        playingAs,
      });
    }
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

  // The avatar the player picked is a temporary local file: upload it (protocol §9,
  // POST /applet/avatar with the token) and play with the URL the server gives back.
  onChooseAvatar(e) {
    const filePath = e.detail && e.detail.avatarUrl;
    const client = this.client;
    if (!filePath || !client.token) {
      this.setData({ avatarStatus: text.t('avatarFailed') });
      return;
    }
    this.setData({ avatarStatus: text.t('avatarUploading') });
    const base = (client.options && client.options.httpBase) || config.httpBase;
    wx.uploadFile({
      url: base + '/applet/avatar',
      filePath,
      name: 'avatar',
      header: { Authorization: 'Bearer ' + client.token },
      success: (res) => {
        let body = null;
        try {
          body = typeof res.data === 'string' ? JSON.parse(res.data) : res.data;
        } catch (err) {
          body = null;
        }
        if (res.statusCode !== 200 || !body || typeof body.avatar !== 'string') {
          this.setData({ avatarStatus: text.t('avatarFailed') });
          return;
        }
        // Kept for the next hello too (the server already stored it for this player).
        client.setProfile({ avatar: body.avatar });
        this.setData({ avatar: body.avatar, avatarStatus: text.t('avatarSaved') });
      },
      fail: () => this.setData({ avatarStatus: text.t('avatarFailed') }),
    });
  },

  onFindOpponent() {
    this.open('/pages/game/game?bot=auto');
  },

  onPlayBot() {
    this.open('/pages/game/game?bot=now');
  },

  onInvite() {
    this.open('/pages/game/game?invite=1');
  },

  open(url) {
    if (this.opening) return; // a second tap before the game page is up
    this.opening = true;
    // A new name goes out in the next hello (the client reconnects with its token).
    this.client.setProfile({ name: this.data.name });
    this.client.connect();
    wx.navigateTo({ url });
  },
});
