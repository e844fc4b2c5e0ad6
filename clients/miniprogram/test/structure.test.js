// The mini-program's files as WeChat loads them, checked without a server: every page in
// app.json exists, every handler and data field its template uses exists, and the code is
// CommonJS that WeChat's runtime runs (no ES modules, no npm packages, nothing newer than
// ES2017 that the developer tools would have to compile).

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const test = require('node:test');
const assert = require('node:assert/strict');
const { MiniProgram, ROOT } = require('./wx-stub.js');

const appJson = JSON.parse(fs.readFileSync(path.join(ROOT, 'app.json'), 'utf8'));

function sources() {
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (['node_modules', 'test'].includes(entry.name)) continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.js')) found.push(full);
    }
  };
  walk(ROOT);
  return found;
}

// Code without comments and string contents, so the checks below look at code only.
function codeOnly(source) {
  return source
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:\\])\/\/.*$/gm, '$1')
    .replace(/'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`/g, "''");
}

test('every page in app.json has its four files', () => {
  assert.deepEqual(appJson.pages, ['pages/lobby/lobby', 'pages/game/game', 'pages/board/board']);
  for (const page of appJson.pages) {
    for (const ext of ['.js', '.wxml', '.wxss', '.json']) {
      assert.ok(fs.existsSync(path.join(ROOT, page + ext)), page + ext);
    }
    JSON.parse(fs.readFileSync(path.join(ROOT, page + '.json'), 'utf8'));
  }
  for (const file of ['app.js', 'app.wxss', 'project.config.json', 'sitemap.json', 'config.js']) {
    assert.ok(fs.existsSync(path.join(ROOT, file)), file);
  }
  assert.ok(fs.existsSync(path.join(ROOT, appJson.sitemapLocation)));
});

test('templates only use handlers and data their page defines', () => {
  const mp = new MiniProgram();
  const builtins = new Set(['item', 'index', 'true', 'false', 'null', 'undefined']);
  for (const route of appJson.pages) {
    mp.require(route + '.js');
    const def = mp.pageDefs.get(route);
    assert.ok(def, route + ' calls Page()');
    const wxml = fs.readFileSync(path.join(ROOT, route + '.wxml'), 'utf8');

    const handlers = [...wxml.matchAll(/\b(?:bind|catch):?[a-z]+="([^"]*)"/g)].map((m) => m[1]);
    assert.ok(handlers.length > 0);
    for (const name of handlers) {
      assert.equal(typeof def[name], 'function', route + '.wxml binds ' + name);
    }

    const fields = new Set(Object.keys(def.data));
    for (const [, expression] of wxml.matchAll(/\{\{([^}]*)\}\}/g)) {
      const roots =
        codeOnly(expression)
          .replace(/\.\s*[A-Za-z_$][\w$]*/g, '') // properties after a dot
          .match(/[A-Za-z_$][\w$]*/g) || [];
      for (const root of roots) {
        if (builtins.has(root)) continue;
        assert.ok(fields.has(root), route + '.wxml uses {{' + expression + '}}: no data.' + root);
      }
    }
  }
});

test('the choice buttons carry the three hands', () => {
  const mp = new MiniProgram();
  mp.require('pages/game/game.js');
  const def = mp.pageDefs.get('pages/game/game');
  assert.deepEqual(
    def.data.choices.map((c) => c.value),
    ['rock', 'paper', 'scissors'],
  );
  const wxml = fs.readFileSync(path.join(ROOT, 'pages/game/game.wxml'), 'utf8');
  assert.match(wxml, /data-choice="\{\{item\.value\}\}"\s+bindtap="onChoose"/);
});

test('CommonJS and ES2017 only, no npm packages in the mini-program', () => {
  const files = sources();
  assert.ok(files.length >= 7, files.join(', '));
  for (const file of files) {
    const name = path.relative(ROOT, file);
    const code = codeOnly(fs.readFileSync(file, 'utf8'));
    assert.doesNotMatch(code, /^\s*(import|export)\b/m, name + ': ES module syntax');
    assert.doesNotMatch(code, /\?\.|\?\?/, name + ': optional chaining or ?? (ES2020)');
    assert.doesNotMatch(code, /\basync\b|\bawait\b/, name + ': async/await');
    assert.doesNotMatch(
      code,
      /\.\.\.[A-Za-z_$({[]/,
      name + ': spread syntax in objects needs ES2018',
    );
    for (const [, request] of fs
      .readFileSync(file, 'utf8')
      .matchAll(/require\(\s*'([^']*)'\s*\)/g)) {
      assert.match(request, /^\.\.?\/.*\.js$/, name + ' requires ' + request);
    }
    // Parses as a script (a syntax error would fail here).
    new Function('require', 'module', 'exports', fs.readFileSync(file, 'utf8'));
  }
});

test('config.js: wss/https placeholders and the documented options', () => {
  const config = new MiniProgram().require('config.js');
  assert.match(config.socketUrl, /^wss:\/\/[^/]+\/applet\/websocket$/);
  assert.match(config.httpBase, /^https:\/\/[^/]+$/);
  assert.equal(typeof config.useWeChatLogin, 'boolean');
  assert.equal(config.heartbeatMs, 20000);
  const project = JSON.parse(fs.readFileSync(path.join(ROOT, 'project.config.json'), 'utf8'));
  assert.equal(project.compileType, 'miniprogram');
  const ignored = project.packOptions.ignore.map((rule) => rule.value);
  for (const name of ['test', 'node_modules', 'package.json', 'package-lock.json']) {
    assert.ok(ignored.includes(name), 'not uploaded: ' + name);
  }
});
