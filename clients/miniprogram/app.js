// The app owns the one game connection; pages reach it with getApp().globalData.client.
const config = require('./config.js');
const { GameClient } = require('./utils/socket.js');
const i18n = require('./utils/i18n.js');

const GAME_ROUTE = 'pages/game/game';

App({
  globalData: {
    client: null,
  },

  onLaunch() {
    const client = new GameClient(config);
    this.globalData.client = client;

    // Back from the background (or a dropped network) in the middle of a match: the
    // server sends resume after hi; show the game wherever the user is.
    client.on('resume', () => {
      const pages = getCurrentPages();
      const top = pages[pages.length - 1];
      if (!top || top.route !== GAME_ROUTE) {
        wx.navigateTo({ url: '/' + GAME_ROUTE + '?resume=1' });
      }
    });

    client.on('bye', (message) => {
      if (message.reason === 'replaced') {
        wx.showModal({
          title: i18n.t('signedInElsewhere'),
          content: i18n.t('signedInElsewhereText'),
          showCancel: false,
        });
      }
    });

    client.connect();
  },

  // WeChat closes sockets about 5 s after the app goes to the background: reconnect with
  // the token as soon as it is shown again.
  onShow() {
    if (this.globalData.client) this.globalData.client.onShow();
  },

  onHide() {
    if (this.globalData.client) this.globalData.client.onHide();
  },
});
