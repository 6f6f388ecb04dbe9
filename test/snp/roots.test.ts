import test from 'ava';
import { isSignedBy, parsePemCertificates } from '../../src/snp/certificate.js';
import { embeddedAmdRoots } from '../../src/snp/roots.js';
import { fixtureText } from './_fixtures.js';

test('the package ships the AMD ARK, ASK and ASVK of Milan, Genoa and Turin, equal to the published ones', (t) => {
  const roots = embeddedAmdRoots();
  t.deepEqual(
    roots.map((r) => r.product),
    ['Milan', 'Genoa', 'Turin'],
  );
  for (const root of roots) {
    const name = root.product?.toLowerCase() ?? '';
    t.true(root.embedded);
    t.true(root.root.selfIssued);
    t.true(isSignedBy(root.root, root.root));
    t.regex(root.root.subject, new RegExp(`CN=ARK-${root.product}`));
    const [ask, asvk] = root.intermediates;
    if (!ask || !asvk) return t.fail();
    t.true(isSignedBy(ask, root.root));
    t.true(isSignedBy(asvk, root.root));
    t.regex(asvk.subject, /VLEK/);
    const published = [
      ...parsePemCertificates(fixtureText(`amd/ask-ark-${name}.pem`)),
      ...parsePemCertificates(fixtureText(`amd/asvk-ark-${name}.pem`)),
    ].map((c) => c.fingerprint);
    t.true(published.includes(root.root.fingerprint));
    t.true(published.includes(ask.fingerprint));
    t.true(published.includes(asvk.fingerprint));
  }
});
