// setup.sh asks Debian/Ubuntu for the packages an image build needs along with
// QEMU (one root step for a learner); vm/image.ts's BUILD_TOOLS says what a
// build needs. The two lists must not drift apart: a tool added to the build
// and forgotten in setup.sh stops a learner's set-up on a clean machine
// (test/e2e/clean-room.test.ts shows that end to end, in minutes; this, at once).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../core/paths.ts';
import { BUILD_TOOLS } from '../vm/image.ts';

const setup = fs.readFileSync(path.join(projectRoot, 'setup.sh'), 'utf8');

describe('setup.sh and the image build', () => {
  it('asks for exactly the packages of the tools npm run image build needs', () => {
    const m = /^\s*IMAGE_BUILD_PACKAGES=\(([^)]*)\)/m.exec(setup);
    expect(m, 'setup.sh has no IMAGE_BUILD_PACKAGES=(…) line').not.toBeNull();
    const listed = m![1].trim().split(/\s+/).sort();
    expect(listed).toEqual([...new Set(BUILD_TOOLS.map(([, pkg]) => pkg))].sort());
    expect(setup).toMatch(/^\s*PACKAGES\+=\("\$\{IMAGE_BUILD_PACKAGES\[@\]\}"\)/m);
  });

  it('prepares the image last, so that the first lab run builds nothing', () => {
    const prepare = setup.indexOf('node runner/launch.mjs image prepare');
    expect(prepare).toBeGreaterThan(setup.indexOf('node runner/launch.mjs image build'));
    expect(prepare).toBeGreaterThan(setup.indexOf('node runner/launch.mjs image pull'));
  });
});
